from __future__ import annotations

import json

import yaml

from .extensions import api


class _PlainDumper(yaml.SafeDumper):
    """No &anchors: generated-client tools and people read the spec, not YAML tricks."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def spec_text(json_format: bool = False) -> str:
    spec = api.spec.to_dict()
    if json_format:
        return json.dumps(spec, indent=2, sort_keys=True) + "\n"
    return yaml.dump(spec, Dumper=_PlainDumper, sort_keys=True, allow_unicode=True)
