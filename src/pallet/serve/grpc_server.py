"""The gRPC server beside the REST one: same process, same event loop, same data plane.

Started by the app's lifespan when `grpc_port` is set, after the models are loaded and
warm; each worker process binds the port too (SO_REUSEPORT), so the kernel spreads
connections over the workers as it does for REST. `grpc.health.v1` answers Kubernetes'
gRPC probes: SERVING once the models are loaded, NOT_SERVING while shutting down.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pallet.errors import PalletError
from pallet.serve.dataplane import DataPlane
from pallet.serve.protocols.proto import grpc_service_pb2_grpc as rpc
from pallet.serve.protocols.v2_grpc import Guard, Servicer

SERVICE = "inference.GRPCInferenceService"


class GrpcServer:
    def __init__(self, plane: DataPlane):
        config = plane.config
        self.server = grpc.aio.server(interceptors=[Guard(plane)], options=[
            ("grpc.max_receive_message_length", config.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1),
        ])
        rpc.add_GRPCInferenceServiceServicer_to_server(Servicer(plane), self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        host = f"[{config.host}]" if ":" in config.host else config.host
        address = f"{host}:{config.grpc_port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError:  # grpcio raises where older releases returned 0
            self.port = 0
        if self.port == 0:
            raise PalletError(f"cannot listen for gRPC on {address}: the port is taken or not allowed "
                              "(pallet serve --grpc-port)")

    async def start(self) -> None:
        await self.server.start()
        for service in ("", SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_seconds: float = 5) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_seconds)
