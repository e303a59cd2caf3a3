"""Validates OCSF events (one JSON object per line) against the OCSF schema.

The JSON Schema of each event's class is generated from the OCSF schema release the event
names in metadata.version, as packaged by `ocsf-json-schema` (offline), and checked with
`jsonschema` (Draft 2020-12): unknown attributes, missing required ones, wrong types and
values outside an enum all fail.

Usage: python3 validate.py EVENTS.jsonl   (prints a count per class; exit 1 on any error)
"""

import json
import sys
from collections import Counter

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


def main(path):
    schemas = {}
    validators = {}
    counts = Counter()
    errors = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            event = json.loads(line)
            version = event["metadata"]["version"]
            if version not in schemas:
                schemas[version] = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
            key = (version, event["class_uid"])
            if key not in validators:
                ocsf = schemas[version]
                name = ocsf.lookup_class_name_from_uid(class_uid=event["class_uid"])
                schema = ocsf.get_class_schema(class_name=name, profiles=[])
                validators[key] = (name, jsonschema.Draft202012Validator(schema))
            name, validator = validators[key]
            found = sorted(validator.iter_errors(event), key=lambda e: list(e.path))
            for e in found:
                where = "/".join(str(p) for p in e.path) or "(event)"
                print(f"line {number} ({name}): {where}: {e.message}")
            errors += len(found)
            counts[f"{event['class_uid']} {name}"] += 1
    for cls, n in sorted(counts.items()):
        print(f"{n:6d}  {cls}")
    if errors:
        print(f"{errors} schema violations")
        return 1
    if not counts:
        print("no events")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
