"""Key export and import in the file format other Matrix clients use (spec "Key exports").

Users move room keys between clients with a passphrase-encrypted file::

    with open(path, "w") as out:
        export_store(store, out, passphrase)
    with open(path) as source:
        import_sessions(inbound, ctx, iter_import(source, passphrase))
"""

from messa.crypto.key_export._format import (
    DEFAULT_ROUNDS,
    FOOTER,
    HEADER,
    MAX_ROUNDS,
    MIN_EXPORT_ROUNDS,
    export_keys,
    import_keys,
    iter_import,
    write_export,
)
from messa.crypto.key_export.sessions import (
    ExportedSession,
    ExportResult,
    ImportResult,
    export_record,
    export_store,
    import_sessions,
    iter_store_sessions,
)

__all__ = [
    "DEFAULT_ROUNDS",
    "FOOTER",
    "HEADER",
    "MAX_ROUNDS",
    "MIN_EXPORT_ROUNDS",
    "ExportResult",
    "ExportedSession",
    "ImportResult",
    "export_keys",
    "export_record",
    "export_store",
    "import_keys",
    "import_sessions",
    "iter_import",
    "iter_store_sessions",
    "write_export",
]
