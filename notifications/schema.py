"""GraphQL for pushes: thin resolvers over notifications.services and notifications.selectors."""

from __future__ import annotations

from typing import Any

import graphene
from graphene import relay
from graphene_django import DjangoObjectType
from graphql import GraphQLResolveInfo
from graphql_relay import from_global_id

from core.errors import AppError, ErrorCode
from notifications import selectors, services
from notifications.models import PushBatch as PushBatchModel
from notifications.models import PushDelivery as PushDeliveryModel
from notifications.models import Subscription as SubscriptionModel
from schema.connections import ForwardConnectionField
from schema.permissions import current_user, login_required, staff_required

PushChannel = graphene.Enum(
    "PushChannel",
    [(c, c) for c in PushBatchModel.Channel.values],
    description="TEMPLATE: an official-account template message; SUBSCRIBE: a mini-program subscribe message "
    "(one of the user's one-time subscriptions each); CUSTOM: an official-account customer-service text.",
)
PushBatchStatus = graphene.Enum("PushBatchStatus", [(s, s) for s in PushBatchModel.Status.values])
PushDeliveryStatus = graphene.Enum("PushDeliveryStatus", [(s, s) for s in PushDeliveryModel.Status.values])


class PushField(graphene.ObjectType):
    key = graphene.String(required=True)
    value = graphene.String(required=True)


class PushFieldInput(graphene.InputObjectType):
    key = graphene.String(required=True, description="the template's field, e.g. thing1")
    value = graphene.String(required=True)


class PushOutcomeCount(graphene.ObjectType):
    status = PushDeliveryStatus(required=True)
    errcode = graphene.Int(required=True, description="WeChat's answer (0: none)")
    errmsg = graphene.String(required=True, description="WeChat's message, or why nothing was sent")
    count = graphene.Int(required=True)


class PushBatch(DjangoObjectType):
    channel = PushChannel(required=True)
    status = PushBatchStatus(required=True)
    data = graphene.List(graphene.NonNull(PushField), required=True)
    outcomes = graphene.List(
        graphene.NonNull(PushOutcomeCount),
        required=True,
        description="How the deliveries ended, grouped by status and answer (one query per batch).",
    )

    class Meta:
        model = PushBatchModel
        interfaces = (relay.Node,)
        fields = (
            "channel",
            "template_id",
            "page",
            "url",
            "status",
            "total",
            "sent",
            "skipped",
            "failed",
            "unknown",
            "pending",
            "stop_reason",
            "created_at",
            "started_at",
            "finished_at",
            "paused_until",
        )

    @staticmethod
    def resolve_channel(batch: PushBatchModel, info: GraphQLResolveInfo) -> str:
        return str(PushBatchModel.Channel(batch.channel).value)

    @staticmethod
    def resolve_status(batch: PushBatchModel, info: GraphQLResolveInfo) -> str:
        return str(PushBatchModel.Status(batch.status).value)

    @staticmethod
    def resolve_data(batch: PushBatchModel, info: GraphQLResolveInfo) -> list[PushField]:
        return [PushField(key=key, value=str(value)) for key, value in (batch.data or {}).items()]

    @staticmethod
    def resolve_outcomes(batch: PushBatchModel, info: GraphQLResolveInfo) -> list[PushOutcomeCount]:
        return [PushOutcomeCount(**row) for row in selectors.outcomes(batch.pk)]


class PushBatchConnection(relay.Connection):
    class Meta:
        node = PushBatch


class PushSubscription(DjangoObjectType):
    """How many subscribe messages of a template the user may still get."""

    status = graphene.String(required=True, description="The last answer: accept, reject, ban or filter.")

    class Meta:
        model = SubscriptionModel
        fields = ("template_id", "remaining", "status", "updated_at")


def _batch_pk(global_id: str) -> int:
    try:
        kind, pk = from_global_id(global_id)
        if kind != "PushBatch":
            raise ValueError(kind)
        return int(pk)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise AppError(ErrorCode.NOT_FOUND, "No such push.") from exc


class Query(graphene.ObjectType):
    push_batch = graphene.Field(PushBatch, id=graphene.ID(required=True), description="A push (staff).")
    push_batches = ForwardConnectionField(PushBatch, description="Pushes, newest first (staff).")

    @staticmethod
    @staff_required
    def resolve_push_batch(root: Any, info: GraphQLResolveInfo, id: str) -> PushBatchModel | None:
        batch: PushBatchModel | None = selectors.batches().filter(pk=_batch_pk(id)).first()
        return batch

    @staticmethod
    @staff_required
    def resolve_push_batches(root: Any, info: GraphQLResolveInfo, **kwargs: Any) -> Any:
        return selectors.batches()


class SendPushInput(graphene.InputObjectType):
    channel = PushChannel(required=True)
    user_ids = graphene.List(graphene.NonNull(graphene.ID), description="The users (or all: true).")
    all = graphene.Boolean(description="Every active user with an openid in the channel's app.")
    template_id = graphene.String(description="TEMPLATE and SUBSCRIBE: the template.")
    data = graphene.List(graphene.NonNull(PushFieldInput), description="TEMPLATE and SUBSCRIBE: its fields.")
    page = graphene.String(description="The mini-program page the message opens.")
    url = graphene.String(description="TEMPLATE: the web page the message opens (without page).")
    text = graphene.String(description="CUSTOM: the text.")


class SendPush(graphene.Mutation):
    """Sends a push in the background (staff); read its progress with pushBatch."""

    class Arguments:
        input = SendPushInput(required=True)

    Output = PushBatch

    @staticmethod
    @staff_required
    def mutate(root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> PushBatchModel:
        try:
            user_ids = [int(pk) for pk in input.get("user_ids") or []]
        except ValueError as exc:
            raise AppError(ErrorCode.BAD_USER_INPUT, "userIds: user ids.") from exc
        fields = input.get("data") or []
        data = {field["key"]: field["value"] for field in fields}
        if len(data) != len(fields):
            raise AppError(ErrorCode.BAD_USER_INPUT, "data: each key once.")
        text = input.get("text") or ""
        return services.create_batch(
            created_by=current_user(info),
            channel=input["channel"].value,
            template_id=input.get("template_id") or "",
            data=data,
            page=input.get("page") or "",
            url=input.get("url") or "",
            message={"msgtype": "text", "text": {"content": text}} if text else None,
            user_ids=user_ids,
            all_users=bool(input.get("all")),
        )


class CancelPush(graphene.Mutation):
    """Stops a push (staff): what is not sent yet is skipped."""

    class Arguments:
        id = graphene.ID(required=True)

    Output = PushBatch

    @staticmethod
    @staff_required
    def mutate(root: Any, info: GraphQLResolveInfo, id: str) -> PushBatchModel:
        return services.cancel_batch(batch_id=_batch_pk(id))


class RecordSubscription(graphene.Mutation):
    """Records what wx.requestSubscribeMessage answered: each accept allows one subscribe message."""

    class Arguments:
        results = graphene.String(
            required=True,
            description='JSON.stringify of the success callback\'s object: {"<templateId>": "accept" | "reject" '
            '| "ban" | "filter", "errMsg": "requestSubscribeMessage:ok"}.',
        )

    Output = graphene.List(graphene.NonNull(PushSubscription), required=True)

    @staticmethod
    @login_required
    def mutate(root: Any, info: GraphQLResolveInfo, results: str) -> list[SubscriptionModel]:
        answers = services.parse_subscription_results(results)
        return services.record_subscription(user=current_user(info), results=answers)


class Mutation(graphene.ObjectType):
    send_push = SendPush.Field()
    cancel_push = CancelPush.Field()
    record_subscription = RecordSubscription.Field()
