"""The root schema: each app's Query and Mutation, composed in one place."""

import graphene

import accounts.schema
import notifications.schema
import payments.schema


class Query(accounts.schema.Query, payments.schema.Query, notifications.schema.Query, graphene.ObjectType):
    pass


class Mutation(accounts.schema.Mutation, payments.schema.Mutation, notifications.schema.Mutation, graphene.ObjectType):
    pass


schema = graphene.Schema(query=Query, mutation=Mutation)
