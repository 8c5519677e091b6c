from celery import shared_task

from officialaccount import services


@shared_task(name="officialaccount.fetch_follower_info", ignore_result=True)
def fetch_follower_info(appid: str, openid: str) -> None:
    """A new follower's unionid (cgi-bin/user/info): the same person as in our other apps."""
    services.fill_follower_info(appid=appid, openid=openid)
