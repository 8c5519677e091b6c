from django.urls import path

from officialaccount import views

urlpatterns = [
    path("", views.server, name="wechat-official-account"),
]
