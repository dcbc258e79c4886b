"""The JSON nesting check on a full source batch (1,000 items), against parsing it.

    .venv/bin/python bench/json_depth.py

Prints the body size, both times and the ratio (check / parse), measured in one run."""

from __future__ import annotations

import json
import timeit

from rewards.hardening import json_depth


def main() -> None:
    items = [{"external_ref": f"ref-{i}", "member": {"kind": "travel_card",
                                                     "number": "6335001234567890"},
              "type": "bus_journey", "occurred_at": "2026-11-30T10:00:00Z",
              "attributes": {"distance_km": 3.2, "stop": "Hyde Park [Corner] \"A\"",
                             "lat": 53.8, "lon": -1.5}} for i in range(1000)]
    raw = json.dumps({"items": items}).encode()
    runs = 50
    check = timeit.timeit(lambda: json_depth(raw), number=runs) / runs
    parse = timeit.timeit(lambda: json.loads(raw), number=runs) / runs
    print(json.dumps({"body_bytes": len(raw), "depth": json_depth(raw),
                      "check_ms": round(check * 1000, 2), "parse_ms": round(parse * 1000, 2),
                      "ratio": round(check / parse, 2)}))


if __name__ == "__main__":
    main()
