"""C2PA manifests, read and verified through the c2pa package with every network fetch off."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any

from detector.provenance.findings import (
    AI_SOURCE_TYPES,
    IGNORED,
    Finding,
    Kind,
    Strength,
    source_type_finding,
)

_local = threading.local()


def _c2pa_context() -> Any:
    """One c2pa Context per thread, with every network fetch off (the daemon stays offline)."""
    context = getattr(_local, "context", None)
    if context is None:
        import c2pa

        settings = c2pa.Settings.from_dict(
            {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
        )
        context = _local.context = c2pa.Context(settings)
    return context


def c2pa_findings(data: bytes, mime: str) -> list[Finding]:
    """The finding of the C2PA manifest store in these bytes (an error finding if unreadable)."""
    try:
        import c2pa
    except ImportError:
        return [Finding(Kind.ERROR, "C2PA manifest present; the c2pa package is missing", IGNORED)]
    try:
        with c2pa.Reader(mime, io.BytesIO(data), context=_c2pa_context()) as reader:
            state = reader.get_validation_state() or "unknown"
            store = json.loads(reader.json())
    except Exception as exc:  # c2pa.C2paError for a broken manifest, anything from the library
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        return [Finding(Kind.ERROR, f"C2PA manifest unreadable: {reason}", IGNORED)]
    return [_manifest_finding(store, str(state))]


def _manifest_finding(store: Any, state: str) -> Finding:
    manifests = store.get("manifests") if isinstance(store, dict) else None
    if not isinstance(manifests, dict) or not manifests:
        return Finding(Kind.ERROR, "C2PA manifest store without manifests", IGNORED)
    active = manifests.get(store.get("active_manifest")) or next(iter(manifests.values()))
    valid = state in ("Valid", "Trusted")
    signature = {"Trusted": "valid, trusted signer", "Valid": "valid signature"}.get(
        state, f"signature does not validate ({state})"
    )
    # Any manifest in the store counts: an AI picture edited later keeps its origin in the
    # ingredient's manifest, not in the active one.
    actions = [pair for m in manifests.values() for pair in _source_types(m)]
    ai = next((a for a in actions if a[1] in AI_SOURCE_TYPES), None)
    chosen = ai or next(iter(actions), None)
    says = f"manifest by {_claim_generator(active)}, {signature}"
    if chosen is None:
        return Finding(Kind.C2PA, says, Strength.INFO)
    action, code = chosen
    finding = source_type_finding(Kind.C2PA, code, f"{says}, {action} with source type")
    if not valid and finding.strength is Strength.DECLARES_AI:
        return Finding(Kind.C2PA, finding.says, Strength.HINT)  # a broken claim decides nothing
    return finding


def _claim_generator(manifest: Any) -> str:
    if not isinstance(manifest, dict):
        return "an unknown generator"
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name = str(info[0].get("name", "")).strip()
        version = str(info[0].get("version", "")).strip()
        if name:
            return f"{name} {version}".strip()[:60]
    generator = manifest.get("claim_generator")
    return str(generator)[:60] if generator else "an unknown generator"


def _source_types(manifest: Any) -> Iterator[tuple[str, str]]:
    """(action, IPTC code of its digital source type) for a manifest's actions that name one."""
    assertions = manifest.get("assertions") if isinstance(manifest, dict) else None
    for assertion in assertions if isinstance(assertions, list) else []:
        if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith(
            "c2pa.actions"
        ):
            continue
        data = assertion.get("data")
        actions = data.get("actions") if isinstance(data, dict) else None
        for action in actions if isinstance(actions, list) else []:
            if not isinstance(action, dict):
                continue
            source, name = action.get("digitalSourceType"), action.get("action")
            if isinstance(source, str) and source:
                name = name.removeprefix("c2pa.") if isinstance(name, str) else "action"
                yield name[:40], source.rstrip("/").rsplit("/", 1)[-1]
