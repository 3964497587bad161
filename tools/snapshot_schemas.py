"""Record the JSON Schema of every event payload under libs/contracts/schemas/v1/.

The compatibility test compares the live models with these snapshots and fails on a breaking
change (a removed event type or field, a changed field type, a new required field). After an
intentional *additive* change, run ``make schemas`` and commit the updated snapshots.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from inbox_contracts import EVENT_TYPES

SNAPSHOT_DIR = Path(__file__).resolve().parent.parent / "libs" / "contracts" / "schemas" / "v1"


def main() -> int:
    SNAPSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for event_type, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema()
        (SNAPSHOT_DIR / f"{event_type}.json").write_text(
            json.dumps(schema, indent=2, sort_keys=True) + "\n"
        )
    print(f"wrote {len(EVENT_TYPES)} schemas to {SNAPSHOT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
