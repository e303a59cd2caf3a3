"""A real gRPC server with the standard health service (grpcio-health-checking), for the
proxy's gRPC health-check test. Listens on 127.0.0.1 (port chosen by the OS), prints the port,
then sets the overall status to each line read on stdin: SERVING or NOT_SERVING."""
import sys
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
print(port, flush=True)
for line in sys.stdin:
    status = line.strip()
    if status in ("SERVING", "NOT_SERVING"):
        servicer.set("", getattr(health_pb2.HealthCheckResponse, status))
server.stop(0)
