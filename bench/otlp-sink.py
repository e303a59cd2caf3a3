"""An OTLP/HTTP sink for benchmarks: accepts POST /v1/traces, answers an empty
ExportTraceServiceResponse (200, no body), and counts requests and bytes (printed on exit),
so a proxy exporting spans pays for a real export without a collector's own cost in the
measurement. usage: otlp-sink.py PORT"""
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

stats = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        self.rfile.read(n)
        stats["requests"] += 1
        stats["bytes"] += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    print(f"otlp-sink: {stats['requests']} exports, {stats['bytes']} bytes", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
