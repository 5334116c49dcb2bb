"""CID strings in, canonical binary CIDv1 out.

Nodes print the same CID in different spellings (js-ipfs: base58 CIDv1 unless asked for base32;
older tools: CIDv0 `Qm…`), so CIDs are compared decoded, never as strings. Parsing uses py-cid,
which reads every multibase and both versions.
"""

import base64

import cid as pycid

from edgetune.storage.errors import InvalidCid


def parse_cid(text: str) -> bytes:
    """Binary CIDv1 of a CID string in any base or version (CIDv0 becomes its dag-pb v1)."""
    try:
        parsed = pycid.from_string(text.strip())
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidCid(f"not a CID: {text!r} ({error})") from error
    return bytes((parsed if parsed.version == 1 else parsed.to_v1()).buffer)


def format_cid(binary: bytes) -> str:
    """The base32 CIDv1 spelling (`bafy…`/`bafk…`) that Kubo prints and the chain stores."""
    return "b" + base64.b32encode(binary).decode("ascii").rstrip("=").lower()


def to_base32(text: str) -> str:
    """Re-spell any CID string as base32 CIDv1."""
    return format_cid(parse_cid(text))


def same_cid(a: str, b: str) -> bool:
    """True when two CID strings name the same content under the same codec."""
    return parse_cid(a) == parse_cid(b)
