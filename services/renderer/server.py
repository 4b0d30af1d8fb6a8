"""gRPC wiring of the renderer: ``Render`` streams progress, then the artefacts."""
from __future__ import annotations

import grpc

from hpe3d.v1 import common_pb2, renderer_pb2, renderer_pb2_grpc
from services.common.cancellation import call_token
from services.common.grpc_server import run_stage
from services.common.job_scope import check_job_scope
from services.common.settings import Settings
from services.common.stage_names import RENDERER
from services.common.storage import ObjectStore

from .render_job import render_job


class RendererServicer(renderer_pb2_grpc.RendererServicer):
    def __init__(self, store: ObjectStore, settings: Settings):
        self.store = store
        self.settings = settings

    def Render(self, request, context):
        check_job_scope(request, context, self.store.bucket, request.job_id,
                        prefixes={"output_prefix": request.output_prefix}, buckets={"bucket": request.bucket})
        for update in render_job(self.store, request, call_token(context)):
            if isinstance(update, list):
                yield renderer_pb2.RenderUpdate(result=renderer_pb2.RenderReply(artifacts=update))
            else:
                done, total, message = update
                yield renderer_pb2.RenderUpdate(progress=common_pb2.Progress(
                    stage=RENDERER, done=done, total=total, message=message))


def register(server: grpc.Server, store: ObjectStore, settings: Settings) -> RendererServicer:
    servicer = RendererServicer(store, settings)
    renderer_pb2_grpc.add_RendererServicer_to_server(servicer, server)
    return servicer


def main() -> None:
    run_stage(RENDERER, register)


if __name__ == "__main__":
    main()
