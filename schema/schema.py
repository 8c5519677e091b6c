"""The root schema: each app's Query and Mutation, composed in one place."""

import graphene

import accounts.schema
import payments.schema


class Query(accounts.schema.Query, payments.schema.Query, graphene.ObjectType):
    pass


class Mutation(accounts.schema.Mutation, payments.schema.Mutation, graphene.ObjectType):
    pass


schema = graphene.Schema(query=Query, mutation=Mutation)
