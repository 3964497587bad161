"""FerretDB v1 (SQLite backend) as a MongoDB-wire database, built from our Go source.

The runner (``ferretdb/main.go``) is built against a *patched* copy of the FerretDB module:
:data:`PATCHES` lists the source edits, applied at build time to a copy of the module from the
Go module cache under ``<devstack_dir>/build/`` (nothing of FerretDB's source is committed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .config import DevstackConfig
from .errors import DevstackError
from .process import is_alive, require_tool, tail

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent / "ferretdb"
SOURCE_FILES = ("main.go", "go.mod", "go.sum")
BINARY_NAME = "ferretdb-runner"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
# Bump when the build procedure itself changes in a way that must trigger a rebuild.
BUILD_RECIPE = "patched-module-via-replace/1"


@dataclass(frozen=True)
class SourcePatch:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path`` of the module."""

    path: str
    """Path inside the FerretDB module, ``/``-separated."""
    old: str
    new: str
    why: str
    requires: tuple[tuple[str, str], ...] = ()
    """(path, text) pairs that must be present for the patch to mean what ``why`` says."""


PATCHES: tuple[SourcePatch, ...] = (
    SourcePatch(
        path="internal/backends/sqlite/metadata/metadata.go",
        old="IDColumn = DefaultColumn + \"->'$._id'\"",
        new=(
            "// inbox devstack patch: the exact expression of the unique _id index (registry.go),\n"
            "\t// so that SQLite uses that index for _id lookups instead of scanning the table.\n"
            '\tIDColumn = DefaultColumn + "->\\"_id\\""'
        ),
        why=(
            "SQLite uses an expression index only for the indexed expression. Queries by _id "
            "(find/update/delete) filter on _ferretdb_sjson->'$._id' while the unique _id_ index "
            'is on _ferretdb_sjson->"_id", so every _id lookup was a full table scan. Both '
            "expressions select the same JSON value, so results are unchanged and existing "
            "databases use their existing index without migration."
        ),
        requires=(
            # how registry.go builds the index expression: _ferretdb_sjson->"_id" for key _id
            (
                "internal/backends/sqlite/metadata/registry.go",
                'fields[j] = fmt.Sprintf("%q", f)',
            ),
            (
                "internal/backends/sqlite/metadata/registry.go",
                'columns[i] = fmt.Sprintf("%s->%s", DefaultColumn, strings.Join(fields, "->"))',
            ),
            (
                "internal/backends/sqlite/metadata/registry_test.go",
                '(_ferretdb_sjson->"_id")`',
            ),
            (
                "internal/backends/sqlite/metadata/metadata.go",
                'DefaultColumn = backends.ReservedPrefix + "sjson"',
            ),
        ),
    ),
    SourcePatch(
        path="internal/handler/msg_update.go",
        old=(
            "\t\tcloser := iterator.NewMultiCloser()\n"
            "\t\tdefer closer.Close()\n"
            "\n"
            "\t\tcloser.Add(res.Iter)\n"
        ),
        new=(
            "\t\t// inbox devstack patch: closed right after this update (below), not deferred\n"
            "\t\t// to the end of the command: each open query holds one pooled connection.\n"
            "\t\tcloser := iterator.NewMultiCloser()\n"
            "\n"
            "\t\tcloser.Add(res.Iter)\n"
        ),
        why=(
            "MsgUpdate runs the updates of one command in a loop and deferred closing each "
            "update's query iterator to the end of the whole command, so an update command "
            "with N updates held N SQLite connections at once. With N >= the pool size (100) "
            "the command waited for a connection it held itself: that database hung for good. "
            "Closing each iterator as soon as its update is done keeps one connection per "
            "command."
        ),
    ),
    SourcePatch(
        path="internal/handler/msg_update.go",
        old=(
            '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n'
            "\t\tif err != nil {\n"
        ),
        new=(
            '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n'
            "\t\tcloser.Close() // inbox devstack patch: see above\n"
            "\n"
            "\t\tif err != nil {\n"
        ),
        why="The other half of the previous patch: close this update's query now.",
    ),
    SourcePatch(
        path="internal/backends/sqlite/collection.go",
        old=("// InsertAll implements backends.Collection interface.\n"),
        new=(
            "// inbox devstack patch: prepareIDInClause returns the WHERE clause of an _id\n"
            "// filter {$in: [...]} of strings and ObjectIDs (what batched reads by key send),\n"
            '// which then uses the unique _id index like an equality; "" for anything else\n'
            "// (no pushdown: the handler filters every document it gets anyway).\n"
            "func prepareIDInClause(filter any) (string, []any) {\n"
            "\targs := inArgs(filter, func(v any) bool {\n"
            "\t\tswitch v.(type) {\n"
            "\t\tcase string, types.ObjectID:\n"
            "\t\t\treturn true\n"
            "\t\t}\n"
            "\t\treturn false\n"
            "\t})\n"
            "\tif args == nil {\n"
            '\t\treturn "", nil\n'
            "\t}\n"
            "\tlist := placeholders(len(args))\n"
            "\treturn fmt.Sprintf(` WHERE %s IN (%s)`, metadata.IDColumn, list), args\n"
            "}\n"
            "\n"
            "// inbox devstack patch: inArgs returns the SQL arguments (SJSON) of a filter value\n"
            "// {$in: [1-500 values]} whose every value passes accept; nil for anything else.\n"
            "func inArgs(filter any, accept func(any) bool) []any {\n"
            "\tdoc, ok := filter.(*types.Document)\n"
            "\tif !ok || doc.Len() != 1 {\n"
            "\t\treturn nil\n"
            "\t}\n"
            '\tin, err := doc.Get("$in")\n'
            "\tif err != nil {\n"
            "\t\treturn nil\n"
            "\t}\n"
            "\tarr, ok := in.(*types.Array)\n"
            "\tif !ok || arr.Len() == 0 || arr.Len() > 500 {\n"
            "\t\treturn nil\n"
            "\t}\n"
            "\targs := make([]any, arr.Len())\n"
            "\tfor i := range args {\n"
            "\t\tv := must.NotFail(arr.Get(i))\n"
            "\t\tif !accept(v) {\n"
            "\t\t\treturn nil\n"
            "\t\t}\n"
            "\t\targs[i] = string(must.NotFail(sjson.MarshalSingleValue(v)))\n"
            "\t}\n"
            "\treturn args\n"
            "}\n"
            "\n"
            "// placeholders returns n comma-separated SQL parameters.\n"
            "func placeholders(n int) string {\n"
            '\treturn strings.TrimSuffix(strings.Repeat("?, ", n), ", ")\n'
            "}\n"
            "\n"
            "// InsertAll implements backends.Collection interface.\n"
        ),
        why=(
            "FerretDB pushes only an _id equality down to SQLite; {_id: {$in: [...]}} scanned "
            "the whole collection, so every service read a batch of keys as concurrent point "
            "reads (one round trip each, and they barely overlap). With the IN clause SQLite "
            "searches the unique _id index once per key within one query. Results are "
            "unchanged: the handler still applies the full filter to what the query returns."
        ),
    ),
    SourcePatch(
        path="internal/backends/sqlite/collection.go",
        old=(
            "\t\tcase string, types.ObjectID:\n"
            "\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)\n"
            "\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}\n"
            "\t\t}\n"
        ),
        new=(
            "\t\tcase string, types.ObjectID:\n"
            "\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)\n"
            "\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}\n"
            "\t\tcase *types.Document: // inbox devstack patch: _id $in, see prepareIDInClause\n"
            "\t\t\twhereClause, args = prepareIDInClause(v)\n"
            "\t\t}\n"
        ),
        why="Query: use prepareIDInClause (previous patch) for an _id $in filter.",
    ),
    SourcePatch(
        path="internal/backends/sqlite/collection.go",
        old=(
            "\t\tcase string, types.ObjectID:\n"
            "\t\t\tfilterPushdown = true\n"
            "\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)\n"
            "\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}\n"
            "\t\t}\n"
        ),
        new=(
            "\t\tcase string, types.ObjectID:\n"
            "\t\t\tfilterPushdown = true\n"
            "\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)\n"
            "\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}\n"
            "\t\tcase *types.Document: // inbox devstack patch: _id $in, see prepareIDInClause\n"
            "\t\t\twhereClause, args = prepareIDInClause(v)\n"
            '\t\t\tfilterPushdown = whereClause != ""\n'
            "\t\t}\n"
        ),
        why="Explain: report the _id $in pushdown (previous patches) as it is run.",
    ),
    SourcePatch(
        path="internal/backends/sqlite/collection.go",
        old="// InsertAll implements backends.Collection interface.\n",
        new=(
            "// inbox devstack patch: prepareFieldClauses returns the WHERE clause of a\n"
            '// filter\'s top-level string equalities and $in lists of strings ({f: "x"},\n'
            "// {f: {$in: [...]}}): the field is one of those JSON strings, or an array (which\n"
            "// may contain one). That selects a superset of the matching documents (the handler\n"
            "// filters what comes back anyway), and SQLite answers it from an index on the\n"
            '// field: the expression is the one CREATE INDEX uses (registry.go). "" if no\n'
            "// field of the filter qualifies.\n"
            "func prepareFieldClauses(filter *types.Document) (string, []any) {\n"
            "\tif filter.Len() == 0 {\n"
            '\t\treturn "", nil\n'
            "\t}\n"
            "\tif _, dup := filter.FindDuplicateKey(); dup { // Get panics on those: leave them\n"
            '\t\treturn "", nil\n'
            "\t}\n"
            "\tvar conds []string\n"
            "\tvar args []any\n"
            "\tfor _, k := range filter.Keys() {\n"
            '\t\tif k == "_id" || !plainFieldName(k) {\n'
            "\t\t\tcontinue\n"
            "\t\t}\n"
            "\t\tvalues := stringArgs(must.NotFail(filter.Get(k)))\n"
            "\t\tif values == nil {\n"
            "\t\t\tcontinue\n"
            "\t\t}\n"
            '\t\texpr := fmt.Sprintf("%s->%q", metadata.DefaultColumn, k)\n'
            "\t\t// JSON arrays are the values that start with [ (and sort before \\)\n"
            "\t\tconds = append(conds, fmt.Sprintf(\n"
            "\t\t\t`(%[1]s IN (%[2]s) OR (%[1]s >= '[' AND %[1]s < '\\'))`,\n"
            "\t\t\texpr, placeholders(len(values)),\n"
            "\t\t))\n"
            "\t\targs = append(args, values...)\n"
            "\t}\n"
            "\tif len(conds) == 0 {\n"
            '\t\treturn "", nil\n'
            "\t}\n"
            '\treturn " WHERE " + strings.Join(conds, " AND "), args\n'
            "}\n"
            "\n"
            "// plainFieldName reports whether k is a letter or _ then letters, digits and _ only\n"
            "// (no path, no operator, nothing that needs quoting in SQL).\n"
            "func plainFieldName(k string) bool {\n"
            "\tfor i, r := range k {\n"
            "\t\tletter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')\n"
            "\t\tif !letter && (i == 0 || r < '0' || r > '9') {\n"
            "\t\t\treturn false\n"
            "\t\t}\n"
            "\t}\n"
            '\treturn k != ""\n'
            "}\n"
            "\n"
            "// stringArgs returns the SQL arguments (SJSON) of a filter value that is a string\n"
            "// or {$in: [1-500 strings]} (inArgs); nil for anything else.\n"
            "func stringArgs(v any) []any {\n"
            "\tif _, ok := v.(string); ok {\n"
            "\t\treturn []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}\n"
            "\t}\n"
            "\treturn inArgs(v, func(v any) bool { _, ok := v.(string); return ok })\n"
            "}\n"
            "\n"
            "// InsertAll implements backends.Collection interface.\n"
        ),
        why=(
            "FerretDB pushes nothing but _id down to SQLite, so a filter on any other field "
            "read and decoded every document of the collection in Go, even with an index on "
            "that field (presence looks an agent's sessions and ends up by agent_key: one "
            "sign-out's reconcile decoded every live session of every agent). With the clause "
            "SQLite searches the field's index (or, without one, skips non-matching rows before "
            "they are decoded). Results are unchanged: the clause keeps every document the "
            "filter can match (arrays included) and the handler applies the whole filter."
        ),
        requires=(
            # the index expression of a top-level field: DefaultColumn->"field"
            ("internal/backends/sqlite/metadata/registry.go", 'fields[j] = fmt.Sprintf("%q", f)'),
            # the handlers filter every document the backend returns (find, count, delete ...)
            ("internal/handler/msg_find.go", "common.FilterIterator("),
        ),
    ),
    SourcePatch(
        path="internal/backends/sqlite/collection.go",
        old="\tq += whereClause\n\tq += prepareOrderByClause(params.Sort)\n",
        new=(
            '\tif whereClause == "" { // inbox devstack patch: see prepareFieldClauses\n'
            "\t\twhereClause, args = prepareFieldClauses(params.Filter)\n"
            "\t}\n"
            "\n"
            "\tq += whereClause\n"
            "\tq += prepareOrderByClause(params.Sort)\n"
        ),
        why="Query: use prepareFieldClauses (previous patch) when _id is not pushed down.",
    ),
    SourcePatch(
        path="internal/backends/sqlite/collection.go",
        old=(
            "\torderByClause := prepareOrderByClause(params.Sort)\n"
            '\tsortPushdown := orderByClause != ""\n'
        ),
        new=(
            "\t// inbox devstack patch: the plan of prepareFieldClauses, as Query runs it; not a\n"
            "\t// filterPushdown (the handler still filters what the clause selects)\n"
            '\tif whereClause == "" {\n'
            "\t\twhereClause, args = prepareFieldClauses(params.Filter)\n"
            "\t}\n"
            "\n"
            "\torderByClause := prepareOrderByClause(params.Sort)\n"
            '\tsortPushdown := orderByClause != ""\n'
        ),
        why="Explain: show the plan of the field clauses (previous patches) as they are run.",
    ),
    SourcePatch(
        path="internal/util/fsql/db.go",
        old="\tBatchSize int\n}\n",
        new=(
            "\tBatchSize int\n"
            "\n"
            "\t// inbox devstack patch: one write at a time per database file, queued here\n"
            "\t// (a channel's blocked senders wait in FIFO order) instead of in SQLite's\n"
            "\t// busy handler, which sleeps 1, 2, 5 ... 100 ms between attempts.\n"
            "\twrites chan struct{}\n"
            "}\n"
            "\n"
            "// acquireWrite waits for this database's write turn (or the context's end).\n"
            "func (db *DB) acquireWrite(ctx context.Context) (func(), error) {\n"
            "\tselect {\n"
            "\tcase db.writes <- struct{}{}:\n"
            "\t\treturn func() { <-db.writes }, nil\n"
            "\tcase <-ctx.Done():\n"
            "\t\treturn nil, lazyerrors.Error(ctx.Err())\n"
            "\t}\n"
            "}\n"
        ),
        why=(
            "SQLite lets one writer in at a time; FerretDB's pool gives every command its own "
            "connection, so concurrent write commands (one service's batch writes, or several "
            "services on one database server) found the database locked and backed off in "
            "SQLite's busy handler, sleeping up to 100 ms per attempt: a write queued behind "
            "others could wait hundreds of milliseconds with the database idle meanwhile. A "
            "FIFO turn per database file in front of every write (transactions and plain "
            "statements) keeps the writer lock busy with no sleeps; reads still run beside "
            "the writer (WAL). Results are unchanged: SQLite serialized these writes anyway."
        ),
        requires=(("internal/util/fsql/db.go", "func WrapDB(db *sql.DB, name string"),),
    ),
    SourcePatch(
        path="internal/util/fsql/db.go",
        old="\t\ttoken:            resource.NewToken(),\n\t}\n",
        new=(
            "\t\ttoken:            resource.NewToken(),\n"
            "\t\twrites:           make(chan struct{}, 1), // inbox devstack patch: see DB\n"
            "\t}\n"
        ),
        why="The write turn (previous patch) of each wrapped database.",
    ),
    SourcePatch(
        path="internal/util/fsql/db.go",
        old=(
            "func (db *DB) ExecContext(ctx context.Context, query string, args ...any) "
            "(sql.Result, error) {\n"
        ),
        new=(
            "func (db *DB) ExecContext(ctx context.Context, query string, args ...any) "
            "(sql.Result, error) {\n"
            "\trelease, err := db.acquireWrite(ctx) // inbox devstack patch: see DB\n"
            "\tif err != nil {\n"
            "\t\treturn nil, err\n"
            "\t}\n"
            "\tdefer release()\n"
            "\n"
        ),
        why="Plain write statements (deletes, DDL) take the write turn (see the DB patch).",
    ),
    SourcePatch(
        path="internal/util/fsql/db.go",
        old=(
            "func (db *DB) InTransaction(ctx context.Context, f func(*Tx) error) (err error) {\n"
            "\tvar sqlTx *sql.Tx\n"
        ),
        new=(
            "func (db *DB) InTransaction(ctx context.Context, f func(*Tx) error) (err error) {\n"
            "\trelease, err := db.acquireWrite(ctx) // inbox devstack patch: see DB\n"
            "\tif err != nil {\n"
            "\t\treturn err\n"
            "\t}\n"
            "\tdefer release() // after the commit or the rollback (deferred below)\n"
            "\n"
            "\tvar sqlTx *sql.Tx\n"
        ),
        why=(
            "Write transactions (inserts, updates: BEGIN IMMEDIATE) take the write turn "
            "(see the DB patch)."
        ),
    ),
    SourcePatch(
        path="internal/util/fsql/db.go",
        old="\t\tl:                logging.WithName(l, name),\n",
        new="\t\tl:                quietUnlessDebug(logging.WithName(l, name)), // inbox patch\n",
        why=(
            "Query logging builds its record before slog's level check: every statement runs "
            'l.With(slog.Any("args", args)).DebugContext(...), and With hands the arguments '
            "(whole JSON documents on inserts and updates) to the handler, which formats them "
            "even though debug records are then dropped: about a quarter of the server's CPU "
            "on inserts. With debug logging off, the statements log to a handler that drops "
            "records unformatted; with debug on (--log-level=debug) nothing changes."
        ),
    ),
    SourcePatch(
        path="internal/util/fsql/db.go",
        old="// WrapDB creates a new DB.\n",
        new=(
            "// inbox devstack patch: quietUnlessDebug returns l if it logs debug records,\n"
            "// else a logger that drops every record (and its attributes) unformatted.\n"
            "func quietUnlessDebug(l *slog.Logger) *slog.Logger {\n"
            "\tif l.Enabled(context.Background(), slog.LevelDebug) {\n"
            "\t\treturn l\n"
            "\t}\n"
            "\treturn slog.New(droppedRecords{})\n"
            "}\n"
            "\n"
            "// droppedRecords is a [slog.Handler] that is enabled for no level.\n"
            "type droppedRecords struct{}\n"
            "\n"
            "func (droppedRecords) Enabled(context.Context, slog.Level) bool  { return false }\n"
            "func (droppedRecords) Handle(context.Context, slog.Record) error { return nil }\n"
            "func (h droppedRecords) WithAttrs([]slog.Attr) slog.Handler      { return h }\n"
            "func (h droppedRecords) WithGroup(string) slog.Handler           { return h }\n"
            "\n"
            "// WrapDB creates a new DB.\n"
        ),
        why="The dropping logger of the previous patch.",
        requires=(
            # transactions log through the database's logger, so they are quiet too
            ("internal/util/fsql/db.go", "tx := wrapTx(sqlTx, db.l)"),
        ),
    ),
    SourcePatch(
        path="internal/util/resource/resource.go",
        old="func Track(obj any, token *Token) {\n\tcheckArgs(obj, token)\n",
        new=(
            "func Track(obj any, token *Token) {\n"
            "\tcheckArgs(obj, token)\n"
            "\n"
            "\t// inbox devstack patch: leak tracking is a debug-build check (see Untrack).\n"
            "\tif !debugbuild.Enabled {\n"
            "\t\treturn\n"
            "\t}\n"
        ),
        why=(
            "Release builds tracked the lifetime of every iterator, transaction and query "
            "result: a pprof profile entry (with a stack capture) plus a finalizer that "
            "panics the whole server if the object is collected untracked. That is about a "
            "fifth of the server's CPU on reads of small documents, and a leaked iterator "
            "crashing the database is the wrong trade for a production-like devstack. The "
            "check stays in debug builds (tag ferretdb_debug); Track and Untrack are no-ops "
            "together, since Untrack panics on an object Track did not record."
        ),
        requires=(
            (
                "internal/util/resource/resource.go",
                '"github.com/FerretDB/FerretDB/internal/util/debugbuild"',
            ),
        ),
    ),
    SourcePatch(
        path="internal/util/resource/resource.go",
        old="func Untrack(obj any, token *Token) {\n\tcheckArgs(obj, token)\n",
        new=(
            "func Untrack(obj any, token *Token) {\n"
            "\tcheckArgs(obj, token)\n"
            "\n"
            "\t// inbox devstack patch: see Track.\n"
            "\tif !debugbuild.Enabled {\n"
            "\t\treturn\n"
            "\t}\n"
        ),
        why="Untrack is a no-op exactly when Track is (previous patch).",
    ),
)


def ferretdb_version() -> str:
    """The FerretDB version the runner's go.mod requires (e.g. ``v1.24.2``)."""
    text = (SOURCE_DIR / "go.mod").read_text()
    found = re.findall(rf"^\s*(?:require\s+)?{re.escape(FERRETDB_MODULE)}\s+(v\S+)", text, re.M)
    if len(found) != 1:
        raise DevstackError(
            f"cannot find the {FERRETDB_MODULE} requirement in {SOURCE_DIR / 'go.mod'}"
        )
    return str(found[0])


def source_hash() -> str:
    """Hash of everything the binary is built from: runner sources, patches, build recipe."""
    digest = hashlib.sha256()
    for name in SOURCE_FILES:
        digest.update(name.encode() + b"\0")
        digest.update((SOURCE_DIR / name).read_bytes())
    digest.update(BUILD_RECIPE.encode() + b"\0")
    for patch in PATCHES:
        for part in (patch.path, patch.old, patch.new, *(x for r in patch.requires for x in r)):
            digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def _hash_file(cfg: DevstackConfig) -> Path:
    return cfg.ferretdb_binary.with_name(BINARY_NAME + ".sha256")


def is_built(cfg: DevstackConfig) -> bool:
    if not cfg.ferretdb_binary.is_file():
        return False
    try:
        return _hash_file(cfg).read_text().strip() == source_hash()
    except FileNotFoundError:
        return False


def patched_module_dir(cfg: DevstackConfig) -> Path:
    return cfg.build_dir / f"ferretdb-{ferretdb_version()}-patched"


def runner_build_dir(cfg: DevstackConfig) -> Path:
    return cfg.build_dir / BINARY_NAME


def _go(go: str, args: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    proc = subprocess.run(
        [go, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()
        raise DevstackError(
            f"{what} failed (go {' '.join(args)}, exit {proc.returncode}):\n"
            + "\n".join(output[-30:])
        )
    return proc.stdout


def _make_writable(root: Path) -> None:
    """Module-cache copies are read-only (dirs 0555, files 0444): make ``root`` editable."""
    # Top-down: a directory is made writable before its entries are visited.
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in (dirpath, *(os.path.join(dirpath, f) for f in filenames)):
            mode = os.lstat(name).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(name, stat.S_IMODE(mode) | stat.S_IWUSR | stat.S_IRUSR)


def _fresh_dir(path: Path) -> None:
    if path.exists():
        _make_writable(path)
        shutil.rmtree(path)


def apply_patches(module_dir: Path, patches: tuple[SourcePatch, ...] = PATCHES) -> None:
    """Apply ``patches`` to the FerretDB module copy at ``module_dir``; fail if any does not fit."""
    for patch in patches:
        for req_path, req_text in patch.requires:
            if req_text not in (module_dir / req_path).read_text():
                raise DevstackError(
                    f"FerretDB patch of {patch.path} no longer fits: {req_path} does not contain "
                    f"{req_text!r} (was FerretDB upgraded? re-check the patch and its reason: "
                    f"{patch.why})"
                )
        target = module_dir / patch.path
        text = target.read_text()
        count = text.count(patch.old)
        if count != 1:
            raise DevstackError(
                f"FerretDB patch target {patch.old!r} occurs {count} times in {patch.path} "
                f"(expected exactly once; was FerretDB upgraded? reason for the patch: "
                f"{patch.why})"
            )
        target.write_text(text.replace(patch.old, patch.new))
        log.debug("patched %s", target)


def _prepare_sources(cfg: DevstackConfig, go: str, env: dict[str, str]) -> Path:
    """Copy the runner and a patched FerretDB module into the build dir; return the runner dir."""
    version = ferretdb_version()
    runner_dir = runner_build_dir(cfg)
    module_dir = patched_module_dir(cfg)
    cfg.build_dir.mkdir(parents=True, exist_ok=True)

    _fresh_dir(runner_dir)
    runner_dir.mkdir()
    for name in SOURCE_FILES:
        shutil.copyfile(SOURCE_DIR / name, runner_dir / name)

    # Inside the (still unmodified) runner copy, so the download is checked against our go.sum.
    raw = _go(
        go,
        ["mod", "download", "-json", f"{FERRETDB_MODULE}@{version}"],
        runner_dir,
        env,
        f"downloading {FERRETDB_MODULE}@{version}",
    )
    info = json.loads(raw)
    if info.get("Error") or not info.get("Dir"):
        raise DevstackError(f"go mod download of {FERRETDB_MODULE}@{version}: {info}")
    expected_sum = f"{FERRETDB_MODULE} {version} {info.get('Sum')}"
    if expected_sum not in (SOURCE_DIR / "go.sum").read_text().splitlines():
        raise DevstackError(f"{FERRETDB_MODULE}@{version} does not match go.sum ({info})")

    _fresh_dir(module_dir)
    shutil.copytree(info["Dir"], module_dir, symlinks=True, copy_function=shutil.copyfile)
    _make_writable(module_dir)
    apply_patches(module_dir)

    # A relative path, so nothing machine-specific ends up anywhere.
    rel = Path(os.path.relpath(module_dir, runner_dir)).as_posix()
    with (runner_dir / "go.mod").open("a") as fh:
        fh.write(
            "\n// Added by inbox_devstack.ferret: build against the patched copy.\n"
            f"replace {FERRETDB_MODULE} => {rel}\n"
        )
    return runner_dir


def build(cfg: DevstackConfig) -> bool:
    """Build ``<devstack_dir>/bin/ferretdb-runner`` if missing or stale. False if up to date."""
    if is_built(cfg):
        log.debug("ferretdb-runner is up to date at %s", cfg.ferretdb_binary)
        return False
    go = require_tool("go", "build the FerretDB runner")
    cfg.bin_dir.mkdir(parents=True, exist_ok=True)
    tmp = cfg.ferretdb_binary.with_name(BINARY_NAME + ".partial")
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env["GOWORK"] = "off"
    log.info(
        "building %s from %s with %d FerretDB patch(es) (first build downloads Go modules)",
        BINARY_NAME,
        SOURCE_DIR,
        len(PATCHES),
    )
    started = time.monotonic()
    runner_dir = _prepare_sources(cfg, go, env)
    # -mod=readonly: go.sum is committed; -buildvcs=false: the build dir may sit in a git checkout.
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly -buildvcs=false").strip()
    _go(
        go,
        ["build", "-trimpath", "-o", str(tmp), "."],
        runner_dir,
        env,
        f"go build of {BINARY_NAME}",
    )
    tmp.replace(cfg.ferretdb_binary)
    _hash_file(cfg).write_text(source_hash() + "\n")
    log.info("built %s in %.1fs", cfg.ferretdb_binary, time.monotonic() - started)
    return True


def start_command(cfg: DevstackConfig) -> list[str]:
    return [
        str(cfg.ferretdb_binary),
        "-listen-addr",
        cfg.mongo_address,
        "-data-dir",
        str(cfg.ferretdb_data_dir),
        "-log-level",
        os.environ.get("DEVSTACK_FERRETDB_LOG_LEVEL", "error"),
    ]


def is_our_ferretdb(cfg: DevstackConfig, args: list[str]) -> bool:
    """Identity check for a pid: our ferretdb-runner serving this devstack's data dir."""
    return bool(args) and Path(args[0]).name == BINARY_NAME and str(cfg.ferretdb_data_dir) in args


def probe(uri: str, timeout: float = 2.0) -> bool:
    """True if a MongoDB-wire server at ``uri`` answers ``ping``."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    timeout_ms = int(timeout * 1000)
    client: MongoClient[dict[str, object]] = MongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
        directConnection=True,
    )
    try:
        reply = client.admin.command("ping")
        return bool(reply.get("ok"))
    except PyMongoError as exc:
        log.debug("mongo probe of %s failed: %r", uri, exc)
        return False
    finally:
        client.close()


def wait_ready(cfg: DevstackConfig, pid: int, log_offset: int) -> None:
    deadline = time.monotonic() + cfg.mongo_start_timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise DevstackError(
                f"FerretDB (pid {pid}) exited during start-up; "
                f"last lines of {cfg.ferretdb_log_file}:\n"
                + tail(cfg.ferretdb_log_file, 40, since=log_offset)
            )
        if probe(cfg.mongodb_uri, timeout=1.0):
            return
        time.sleep(0.3)
    raise DevstackError(
        f"FerretDB did not answer ping within {cfg.mongo_start_timeout:.0f}s (pid {pid}); "
        f"last lines of {cfg.ferretdb_log_file}:\n"
        + tail(cfg.ferretdb_log_file, 40, since=log_offset)
    )
