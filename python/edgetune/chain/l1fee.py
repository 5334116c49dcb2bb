"""The L1 data fee of an OP-stack L2 transaction, computed as the OP stack charges it (Fjord and
later: Granite, Holocene; before Isthmus's operator fee).

An OP-stack sequencer posts every L2 transaction's signed bytes to L1, so each transaction pays,
on top of its L2 execution fee (gasUsed x effectiveGasPrice), an L1 data fee taken from the
sender and sent to the L1FeeVault. Since Fjord that fee is

    estimatedSize = max(100e6, 836_500 x fastlzLength(signedTx) - 42_585_600)   (bytes x 1e6)
    l1Fee = estimatedSize x (16 x baseFeeScalar x l1BaseFee + blobBaseFeeScalar x blobBaseFee)
            / 1e12

with the L1 prices and scalars read from the L1Block predeploy's storage (the sequencer's
first transaction of every block writes them there). Real OP nodes also report it in receipts
(`l1Fee`, `l1GasUsed`, ...); anvil's optimism mode charges it exactly so but leaves those
fields out, and serves no GasPriceOracle, so edgetune computes it here from the transaction's
own bytes (tests/chain/test_l2.py checks it against what the node took from the sender).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hexbytes import HexBytes

if TYPE_CHECKING:  # the CLI imports this module through nodes.py; web3 stays off its start-up
    from web3 import Web3

L1_BLOCK = "0x4200000000000000000000000000000000000015"  # L1 prices and fee scalars
L1_FEE_VAULT = "0x420000000000000000000000000000000000001A"  # where the L1 data fee goes
GAS_PRICE_ORACLE = "0x420000000000000000000000000000000000000F"

# L1Block storage slots (its Solidity layout): basefee; the packed (sequenceNumber uint64,
# blobBaseFeeScalar uint32, baseFeeScalar uint32) word; blobBaseFee.
BASE_FEE_SLOT = 1
SCALARS_SLOT = 3
BLOB_BASE_FEE_SLOT = 7
_BLOB_SCALAR_SHIFT = 64  # above the uint64 sequence number
_BASE_SCALAR_SHIFT = 96
_UINT32 = 0xFFFF_FFFF

# Fjord's linear fit from FastLZ length to compressed (brotli) size, scaled by 1e6.
FJORD_INTERCEPT = -42_585_600
FJORD_FASTLZ_COEF = 836_500
FJORD_MIN_SIZE = 100 * 10**6
FJORD_DIVISOR = 10**12
TX_DATA_NON_ZERO_GAS = 16  # L1 calldata gas per byte, as l1GasUsed counts it


@dataclass(frozen=True)
class L1FeeParams:
    """What the L1 data fee depends on besides the transaction: the L1 base fee and blob base
    fee (wei) and the chain operator's two scalars (x 1e-6)."""

    l1_base_fee: int
    blob_base_fee: int
    base_fee_scalar: int
    blob_base_fee_scalar: int

    def storage(self) -> dict[int, int]:
        """L1Block's storage words (slot -> value) that hold these parameters."""
        scalars = (self.base_fee_scalar << _BASE_SCALAR_SHIFT) | (
            self.blob_base_fee_scalar << _BLOB_SCALAR_SHIFT
        )
        return {
            BASE_FEE_SLOT: self.l1_base_fee,
            SCALARS_SLOT: scalars,
            BLOB_BASE_FEE_SLOT: self.blob_base_fee,
        }

    @classmethod
    def from_storage(cls, words: dict[int, int]) -> "L1FeeParams":
        """The parameters from L1Block's storage words (as read with eth_getStorageAt)."""
        scalars = words[SCALARS_SLOT]
        return cls(
            l1_base_fee=words[BASE_FEE_SLOT],
            blob_base_fee=words[BLOB_BASE_FEE_SLOT],
            base_fee_scalar=(scalars >> _BASE_SCALAR_SHIFT) & _UINT32,
            blob_base_fee_scalar=(scalars >> _BLOB_SCALAR_SHIFT) & _UINT32,
        )

    @property
    def fee_scaled(self) -> int:
        """Wei per 1e6 estimated bytes, times 1e6 (Ecotone's l1FeeScaled)."""
        return (
            TX_DATA_NON_ZERO_GAS * self.base_fee_scalar * self.l1_base_fee
            + self.blob_base_fee_scalar * self.blob_base_fee
        )


# What an optimism-mode AnvilNode writes into L1Block (anvil leaves it empty, so charges no
# L1 fee): an L1 at 2 gwei base fee and 1 gwei blob base fee, with scalars of the size an
# OP-stack chain posting blobs uses. A local choice for measuring, not any chain's quote.
DEV_L1_FEES = L1FeeParams(
    l1_base_fee=2 * 10**9,
    blob_base_fee=10**9,
    base_fee_scalar=1368,
    blob_base_fee_scalar=810_949,
)


@dataclass(frozen=True)
class L1Cost:
    """One transaction's L1 data: its signed size, FastLZ size, Fjord's estimated compressed
    size (bytes, at least 100), the L1 gas that stands for (l1GasUsed) and the fee (wei)."""

    tx_bytes: int
    fastlz_bytes: int
    estimated_bytes: int
    l1_gas_used: int
    fee: int


def l1_cost(signed_tx: bytes, params: L1FeeParams) -> L1Cost:
    """The L1 data fee of one signed (EIP-2718 encoded) transaction under `params`."""
    fastlz = flz_compress_len(signed_tx)
    scaled_size = max(FJORD_MIN_SIZE, FJORD_FASTLZ_COEF * fastlz + FJORD_INTERCEPT)
    return L1Cost(
        tx_bytes=len(signed_tx),
        fastlz_bytes=fastlz,
        estimated_bytes=scaled_size // 10**6,
        l1_gas_used=scaled_size * TX_DATA_NON_ZERO_GAS // 10**6,
        fee=scaled_size * params.fee_scaled // FJORD_DIVISOR,
    )


@dataclass(frozen=True)
class TxFees:
    """What one mined transaction cost on an OP-stack chain: L2 execution gas and fee (wei),
    its L1 data as computed here, and the `l1Fee` its receipt reports (None where the node
    reports none, as anvil)."""

    gas_used: int
    l2_fee: int
    l1: L1Cost
    reported_l1_fee: int | None

    @property
    def l1_fee(self) -> int:
        """The node's figure where it gives one, else ours (they agree on real OP nodes)."""
        return self.l1.fee if self.reported_l1_fee is None else self.reported_l1_fee


def read_l1_params(w3: "Web3", block: int | str = "latest") -> L1FeeParams:
    """The L1 fee parameters in force at `block`, from L1Block's storage (any OP-stack node)."""
    slots = (BASE_FEE_SLOT, SCALARS_SLOT, BLOB_BASE_FEE_SLOT)
    words = {s: int.from_bytes(w3.eth.get_storage_at(L1_BLOCK, s, block), "big") for s in slots}
    return L1FeeParams.from_storage(words)


def transaction_fees(w3: "Web3", tx_hash: HexBytes) -> TxFees:
    """L2 and L1 cost of the mined transaction `tx_hash`, from its receipt and signed bytes."""
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    raw = w3.provider.make_request("eth_getRawTransactionByHash", [tx_hash.to_0x_hex()])
    signed = HexBytes(raw["result"])
    reported = receipt.get("l1Fee")
    return TxFees(
        gas_used=receipt["gasUsed"],
        l2_fee=receipt["gasUsed"] * receipt["effectiveGasPrice"],
        l1=l1_cost(signed, read_l1_params(w3, receipt["blockNumber"])),
        reported_l1_fee=None if reported is None else int(str(reported), 0),
    )


# FastLZ level 1 as Solady's LibZip.flzCompress runs it (the OP stack's reference), counting
# output bytes only. No Python package implements this variant: C FastLZ frames and chooses
# matches differently, so its length would not be the one the chain charges for.
_HASH_SIZE = 8192
_MAX_DISTANCE = 8192
_LITERAL_RUN = 32  # one control byte per run of up to 32 literals
_MATCH_CHUNK = 262  # longest match one 3-byte token codes


def flz_compress_len(data: bytes) -> int:
    """Length of `data` after Solady's FastLZ compression."""
    limit = len(data) - 13 if len(data) >= 13 else 0
    table = [0] * _HASH_SIZE
    size = anchor = 0
    index = 2
    while index < limit:
        # find the next 3-byte sequence seen before within the window
        while True:
            seq = _u24(data, index)
            slot = _hash(seq)
            ref, table[slot] = table[slot], index
            distance = index - ref
            if index >= limit:
                break
            index += 1
            if distance < _MAX_DISTANCE and seq == _u24(data, ref):
                break
        if index >= limit:
            break
        index -= 1
        if index > anchor:
            size = _literals(index - anchor, size)
        length = _match_length(data, ref + 3, index + 3, limit + 9)
        size = _match(length, size)
        index += length
        for _ in range(2):  # hash the two positions after the match, as the reference does
            table[_hash(_u24(data, index))] = index
            index += 1
        anchor = index
    return _literals(len(data) - anchor, size)


def _u24(data: bytes, index: int) -> int:
    return data[index] | data[index + 1] << 8 | data[index + 2] << 16


def _hash(seq: int) -> int:
    return ((seq * 2654435769) >> 19) & (_HASH_SIZE - 1)


def _literals(run: int, size: int) -> int:
    size += (_LITERAL_RUN + 1) * (run // _LITERAL_RUN)
    rest = run % _LITERAL_RUN
    return size + rest + 1 if rest else size


def _match_length(data: bytes, ref: int, index: int, end: int) -> int:
    """Bytes compared from `index` up to `end`; the reference counts on past the first
    difference by exactly one byte (its loop stops after the mismatching byte)."""
    length = 0
    span = end - index
    while length < span:
        if data[ref + length] != data[index + length]:
            span = 0
        length += 1
    return length


def _match(length: int, size: int) -> int:
    length -= 1
    size += 3 * (length // _MATCH_CHUNK)
    return size + 3 if length % _MATCH_CHUNK >= 6 else size + 2
