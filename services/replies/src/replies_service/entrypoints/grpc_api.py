"""gRPC servicer of ``inbox.replies.v1.RepliesService``: translate, call, translate back."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from inbox.replies.v1 import replies_pb2 as pb
from inbox.replies.v1 import replies_pb2_grpc as pb_grpc
from inbox_kit.auth import current_principal
from inbox_kit.timestamps import timestamp
from inbox_kit.validation import optional_id

from replies_service.domain.model import Collection, CollectionKind, Viewer, usable_channel
from replies_service.service_layer import handlers
from replies_service.service_layer.handlers import Deps, ReplyView

Context = grpc.aio.ServicerContext[Any, Any]

_KIND = {
    CollectionKind.PERSONAL: pb.COLLECTION_KIND_PERSONAL,
    CollectionKind.SHARED: pb.COLLECTION_KIND_SHARED,
}


def _viewer(channel_id: str = "") -> Viewer:
    """The caller, answering on ``channel_id`` — only if the token grants that channel."""
    optional_id("channel_id", channel_id)
    p = current_principal()
    return Viewer(p.org_id, p.agent_id, p.is_admin, p.teams, usable_channel(channel_id, p.channels))


@functools.lru_cache(maxsize=65_536)
def _ts(value: datetime) -> Timestamp:
    """Cached: a search page converts the same replies' times over and over (message
    constructors copy the Timestamp, so sharing the cached one is safe)."""
    return timestamp(value)


def collection_pb(c: Collection) -> pb.Collection:
    return pb.Collection(
        collection_id=c.collection_id,
        kind=_KIND[c.kind],
        name=c.name,
        description=c.description,
        team_ids=list(c.team_ids),
        channel_ids=list(c.channel_ids),
        owner_agent_id=c.owner_agent_id,
        created_at=_ts(c.created_at),
        updated_at=_ts(c.updated_at),
    )


def reply_pb(view: ReplyView) -> pb.SavedReply:
    r = view.reply
    return pb.SavedReply(
        reply_id=r.reply_id,
        collection_id=r.collection_id,
        title=r.title,
        body=r.body,
        shortcut=r.shortcut,
        tags=list(r.tags),
        usage_count=view.usage_count,
        created_by=r.created_by,
        created_at=_ts(r.created_at),
        updated_at=_ts(r.updated_at),
        collection_kind=_KIND[r.collection_kind],
    )


class RepliesServicer(pb_grpc.RepliesServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: Context
    ) -> pb.Collection:
        c = await handlers.create_collection(
            self._deps,
            _viewer(),
            name=request.name,
            description=request.description,
            team_ids=request.team_ids,
            channel_ids=request.channel_ids,
        )
        return collection_pb(c)

    async def UpdateCollection(
        self, request: pb.UpdateCollectionRequest, context: Context
    ) -> pb.Collection:
        c = await handlers.update_collection(
            self._deps,
            _viewer(),
            collection_id=request.collection_id,
            name=request.name,
            description=request.description,
            team_ids=request.team_ids,
            channel_ids=request.channel_ids,
        )
        return collection_pb(c)

    async def DeleteCollection(
        self, request: pb.DeleteCollectionRequest, context: Context
    ) -> pb.DeleteCollectionResponse:
        n = await handlers.delete_collection(self._deps, _viewer(), request.collection_id)
        return pb.DeleteCollectionResponse(deleted_replies=n)

    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: Context
    ) -> pb.ListCollectionsResponse:
        cs = await handlers.list_collections(self._deps, _viewer(request.channel_id))
        return pb.ListCollectionsResponse(collections=[collection_pb(c) for c in cs])

    async def CreateReply(self, request: pb.CreateReplyRequest, context: Context) -> pb.SavedReply:
        r = await handlers.create_reply(
            self._deps,
            _viewer(),
            collection_id=request.collection_id,
            title=request.title,
            body=request.body,
            shortcut=request.shortcut,
            tags=request.tags,
        )
        return reply_pb(ReplyView(r, 0))

    async def UpdateReply(self, request: pb.UpdateReplyRequest, context: Context) -> pb.SavedReply:
        r = await handlers.update_reply(
            self._deps,
            _viewer(),
            reply_id=request.reply_id,
            title=request.title,
            body=request.body,
            shortcut=request.shortcut,
            tags=request.tags,
        )
        return reply_pb(ReplyView(r, await self._deps.store.usage_count(r.reply_id)))

    async def DeleteReply(
        self, request: pb.DeleteReplyRequest, context: Context
    ) -> pb.DeleteReplyResponse:
        await handlers.delete_reply(self._deps, _viewer(), request.reply_id)
        return pb.DeleteReplyResponse()

    async def GetReply(self, request: pb.GetReplyRequest, context: Context) -> pb.SavedReply:
        view = await handlers.get_reply(self._deps, _viewer(request.channel_id), request.reply_id)
        return reply_pb(view)

    async def ListReplies(
        self, request: pb.ListRepliesRequest, context: Context
    ) -> pb.ListRepliesResponse:
        page = await handlers.list_replies(
            self._deps,
            _viewer(request.channel_id),
            collection_id=request.collection_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListRepliesResponse(
            replies=[reply_pb(v) for v in page.items], next_page_token=page.next_page_token
        )

    async def SearchReplies(
        self, request: pb.SearchRepliesRequest, context: Context
    ) -> pb.SearchRepliesResponse:
        page = await handlers.search_replies(
            self._deps,
            _viewer(request.channel_id),
            query=request.query,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.SearchRepliesResponse(
            results=[
                pb.SearchResult(reply=reply_pb(h.view), match=pb.MatchKind.ValueType(h.match))
                for h in page.hits
            ],
            next_page_token=page.next_page_token,
        )

    async def RenderReply(
        self, request: pb.RenderReplyRequest, context: Context
    ) -> pb.RenderReplyResponse:
        result = await handlers.render_reply(
            self._deps,
            _viewer(request.channel_id),
            current_principal(),
            reply_id=request.reply_id,
            contact_id=request.contact_id,
        )
        return pb.RenderReplyResponse(
            text=result.rendered.text,
            missing_placeholders=list(result.rendered.missing),
            fallback_placeholders=list(result.rendered.fallbacks),
            contact_found=result.contact_found,
        )

    async def RecordReplyUsed(
        self, request: pb.RecordReplyUsedRequest, context: Context
    ) -> pb.RecordReplyUsedResponse:
        event_id = await handlers.record_reply_used(
            self._deps,
            _viewer(request.channel_id),
            reply_id=request.reply_id,
            use_id=request.use_id,
            conversation_id=request.conversation_id,
        )
        return pb.RecordReplyUsedResponse(event_id=event_id)
