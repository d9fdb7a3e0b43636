"""Files: encrypted upload and download (AES-CTR + SHA-256 per the spec)."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from messa.crypto.attachments import decrypt_attachment, encrypt_attachment
from messa.errors import InvalidInputError
from messa.types.events import TimelineEvent
from messa.types.ids import EventId

if TYPE_CHECKING:
    from messa.client.wiring import Wiring
    from messa.store.base import Store

_MSGTYPES = {"image": "m.image", "video": "m.video", "audio": "m.audio"}


class MediaMixin:
    """Sending and receiving files."""

    if TYPE_CHECKING:
        _store: Store

        @property
        def _w(self) -> Wiring: ...

        def _resolve_known(self, room: str) -> Any: ...

        async def send_message(
            self, room: str, event_type: str, content: dict[str, Any]
        ) -> EventId: ...

    async def send_file(
        self,
        room: str,
        file: str | Path | bytes,
        *,
        filename: str | None = None,
        mimetype: str | None = None,
    ) -> EventId:
        """Send a file. In an encrypted room it is encrypted before upload.

        The server only ever sees ciphertext; the name and type travel inside
        the encrypted event.
        """
        w = self._w
        rid = self._resolve_known(room)
        if isinstance(file, bytes):
            data, name = file, filename or "file"
        else:
            path = Path(file)
            data, name = await asyncio.to_thread(path.read_bytes), filename or path.name
        mime = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        rec = self._store.get_room(rid)
        encrypted = rec is not None and rec.encryption is not None
        content: dict[str, Any] = {
            "msgtype": _MSGTYPES.get(mime.split("/")[0], "m.file"),
            "body": name,
            "filename": name,
            "info": {"size": len(data), "mimetype": mime},
        }
        if encrypted:
            ciphertext, info = encrypt_attachment(data)
            info["url"] = await w.api.upload(ciphertext, "application/octet-stream")
            content["file"] = info
        else:
            content["url"] = await w.api.upload(data, mime, name)
        return await self.send_message(rid, "m.room.message", content)

    async def download(self, event: TimelineEvent, *, max_bytes: int = 100 << 20) -> bytes:
        """Download (and decrypt) the file of a message event."""
        w = self._w
        file = event.content.get("file")
        if isinstance(file, dict):
            url = file.get("url")
            if not isinstance(url, str):
                raise InvalidInputError("encrypted file has no url")
            return decrypt_attachment(await w.api.download(url, max_bytes), file)
        url = event.content.get("url")
        if not isinstance(url, str):
            raise InvalidInputError("event has no file")
        return await w.api.download(url, max_bytes)
