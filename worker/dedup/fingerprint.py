"""Pure identity logic: 64-bit ids, normalised titles, word lists, MinHash signatures and LSH bands.

No I/O here, so it can be tested and benchmarked on its own; ``stories`` and ``buckets`` store what it computes.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.core.keys import digest

# --- pure logic: ids, titles, texts, signatures ------------------------------------------------------------

HEX16 = re.compile(r"[0-9a-f]{16}")

MIN_TITLE_WORDS = 4  # shorter titles ("Live updates", "Opinion") are too generic to identify a story
MIN_EXACT_WORDS = 10  # below this, an identical text says nothing (empty extractions, one-line stubs)
MIN_NEAR_WORDS = 50  # below this, shingle sets are too small for a meaningful Jaccard estimate
SHINGLE_WORDS = 5
NUM_PERM = 128
BANDS = 16
ROWS = NUM_PERM // BANDS  # 16 bands x 8 rows: P(candidate) is 0.994 at Jaccard 0.85, 0.06 at 0.5

_M64 = (1 << 64) - 1


def id64(value: str) -> int:
    """64 bits identifying an id: an article id (16 hex characters) is used as is, anything else is hashed."""
    if HEX16.fullmatch(value):
        return int(value, 16)
    raw = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(raw, "big")


def normalize_title(title: str) -> str | None:
    """NFKC, casefold, punctuation stripped, whitespace collapsed; None when fewer than 4 words remain."""
    text = unicodedata.normalize("NFKC", title or "").casefold()
    # Apostrophes and dots vanish ("U.S." = "US", "don't" = "dont"); any other punctuation separates words.
    text = re.sub(r"['‘’`´.]", "", text)
    text = re.sub(r"[\W_]+", " ", text).strip()
    return text if len(text.split(" ")) >= MIN_TITLE_WORDS and text else None


_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The text's words, NFKC-normalised and case-folded: layout, punctuation and case never matter."""
    return _WORD.findall(unicodedata.normalize("NFKC", text or "").casefold())


def text_digest(tokens: Sequence[str]) -> str:
    """Identity of a text's word sequence (32 hex characters)."""
    return digest(" ".join(tokens), 32)


def _constants(label: str, n: int) -> npt.NDArray[np.uint64]:
    # Derived from blake2b rather than a NumPy RNG: signatures stored in Redis are compared across workers,
    # so the constants must not depend on the NumPy version a worker happens to run.
    out = [int.from_bytes(hashlib.blake2b(f"{label}:{i}".encode(), digest_size=8).digest(), "big")
           for i in range(n)]
    return np.array(out, dtype=np.uint64)


_PERM_A = _constants("minhash-a", NUM_PERM) | np.uint64(1)  # odd multipliers (multiply-shift hashing)
_PERM_B = _constants("minhash-b", NUM_PERM)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SM1 = np.uint64(0xBF58476D1CE4E5B9)
_SM2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 2048  # rows per block: bounds the temporary (rows x 128 x 8 bytes) for very long texts


def shingle_hashes(tokens: Sequence[str], size: int = SHINGLE_WORDS) -> npt.NDArray[np.uint64]:
    """One well-mixed 64-bit hash per run of ``size`` consecutive words."""
    n = len(tokens) - size + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    # crc32 per word is stable across processes (unlike hash()) and ~10x cheaper than a cryptographic hash.
    w = np.fromiter((zlib.crc32(t.encode("utf-8", "surrogatepass")) for t in tokens), dtype=np.uint64,
                    count=len(tokens))
    h = w[:n].copy()
    for j in range(1, size):
        h = h * _MIX + w[j : j + n]  # wraps mod 2**64, which is what we want
    # splitmix64 finaliser: spreads every input bit over the whole word before the permutations.
    h ^= h >> np.uint64(30)
    h *= _SM1
    h ^= h >> np.uint64(27)
    h *= _SM2
    h ^= h >> np.uint64(31)
    return h


def minhash(tokens: Sequence[str]) -> npt.NDArray[np.uint32]:
    """MinHash signature (``NUM_PERM`` 32-bit values) of the text's word shingles."""
    h = shingle_hashes(tokens)
    sig = np.full(NUM_PERM, 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
    for start in range(0, len(h), _CHUNK):
        # multiply-add-shift: one cheap universal hash per permutation, top 32 bits kept. The shift is
        # monotonic, so it is applied once to the minima rather than to the whole (rows x 128) block.
        block = h[start : start + _CHUNK, None] * _PERM_A
        block += _PERM_B
        np.minimum(sig, block.min(axis=0), out=sig)
    return (sig >> np.uint64(32)).astype(np.uint32)


def band_hashes(sig: npt.NDArray[np.uint32]) -> list[int]:
    """One 64-bit hash per LSH band (band index included, so equal rows in different bands never meet)."""
    data = sig.astype("<u4").tobytes()
    step = ROWS * 4
    return [int.from_bytes(hashlib.blake2b(bytes([b]) + data[b * step : (b + 1) * step], digest_size=8)
                           .digest(), "big") for b in range(BANDS)]


def signature_bytes(sig: npt.NDArray[np.uint32]) -> bytes:
    """The stored form of a signature (little-endian uint32s; the Lua verifier compares 4-byte slices)."""
    return sig.astype("<u4").tobytes()


def estimated_jaccard(a: npt.NDArray[np.uint32], b: npt.NDArray[np.uint32]) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


# A same title counts only when the texts overlap at least this much (estimated Jaccard of 5-word shingles):
# distinct articles score ~0.0-0.1, wire copies under an edited layout 0.5-1.0.
TITLE_MIN_SIMILARITY = 0.3


@dataclass(frozen=True)
class Fingerprint:
    """Everything the story index needs to know about one article, computed without Redis."""

    title: str | None  # normalised title, None when too short to identify a story
    word_count: int
    exact: str | None  # digest of the word sequence; None when the text is too short
    signature: npt.NDArray[np.uint32] | None  # None when the text is too short for near-duplicate detection

    @classmethod
    def of(cls, title: str, text: str) -> Fingerprint:
        tokens = words(text)
        n = len(tokens)
        return cls(
            title=normalize_title(title),
            word_count=n,
            exact=text_digest(tokens) if n >= MIN_EXACT_WORDS else None,
            signature=minhash(tokens) if n >= MIN_NEAR_WORDS else None,
        )

    def same_story(self, other: Fingerprint, threshold: float) -> str | None:
        """The reason two fingerprints are one story, or None (the pure form of the Redis check)."""
        if (self.title is not None and self.title == other.title and self.signature is not None
                and other.signature is not None
                and estimated_jaccard(self.signature, other.signature) >= TITLE_MIN_SIMILARITY):
            return "title"
        if self.exact is not None and self.exact == other.exact:
            return "exact_text"
        if (self.signature is not None and other.signature is not None
                and estimated_jaccard(self.signature, other.signature) >= threshold):
            return "near_text"
        return None


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


