"""A client app instrumented with the OpenTelemetry Python SDK: starts a span, calls URL with
the span's context injected by the SDK's W3C propagator, exports its span over OTLP/HTTP to
COLLECTOR, and prints {"status", "trace_id", "span_id"} as one JSON line.

usage: client.py URL COLLECTOR_BASE_URL"""
import json
import sys
import urllib.error
import urllib.request

from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

url, collector = sys.argv[1], sys.argv[2]
provider = TracerProvider(resource=Resource.create({"service.name": "shopper"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector + "/v1/traces")))
tracer = provider.get_tracer("signet-test-client")

with tracer.start_as_current_span("checkout", kind=trace.SpanKind.CLIENT) as span:
    headers = {}
    propagate.inject(headers)
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    ctx = span.get_span_context()
    result = {
        "status": status,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "sent": headers,
    }
provider.shutdown()
print(json.dumps(result), flush=True)
