"""An import-linter contract type import-linter does not ship: "imports only the standard
library (and itself, and the ``allowed_modules``)". Used for every service's ``domain``
package (``make lint``); the one allowed module, ``inbox_kit.errors``, is itself held to the
standard library by the same contract."""

from __future__ import annotations

import sys

from importlinter import Contract, ContractCheck, fields, output


class StdlibOnlyContract(Contract):
    """``source_modules`` import nothing but the standard library, their own package and the
    ``allowed_modules``."""

    source_modules = fields.ListField(subfield=fields.ModuleField())
    allowed_modules = fields.ListField(subfield=fields.ModuleField(), default=[])

    def check(self, graph: object, verbose: bool) -> ContractCheck:
        broken: list[tuple[str, str]] = []
        allowed = {m.name for m in self.allowed_modules}  # type: ignore[attr-defined]
        for source in self.source_modules:  # type: ignore[attr-defined]
            package = source.name
            modules = {package} | graph.find_descendants(package)  # type: ignore[attr-defined]
            for module in sorted(modules):
                for imported in sorted(graph.find_modules_directly_imported_by(module)):  # type: ignore[attr-defined]
                    top = imported.split(".")[0]
                    inside = imported == package or imported.startswith(package + ".")
                    if inside or imported in allowed:
                        continue
                    if top not in sys.stdlib_module_names:
                        broken.append((module, imported))
        return ContractCheck(kept=not broken, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, imported in check.metadata["broken"]:
            output.print_error(f"{module} imports {imported} (only the standard library)")
            output.new_line()
