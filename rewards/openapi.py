from __future__ import annotations

import json

import yaml

from .extensions import api


def spec_text(json_format: bool = False) -> str:
    spec = api.spec.to_dict()
    if json_format:
        return json.dumps(spec, indent=2, sort_keys=True) + "\n"
    return yaml.safe_dump(spec, sort_keys=True, allow_unicode=True)
