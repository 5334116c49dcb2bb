// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IEdgeTune} from "../IEdgeTune.sol";
import {WeightedMedian} from "./WeightedMedian.sol";

/// @title ScoreTally
/// @notice Stage 1 of the vote, decided on chain from every revealed score ballot: which updates
/// are valid (a stake majority says so), which are near-copies (likewise), each update's
/// stake-weighted median score over all scorers (the author's own score included), the included
/// set, and how closely each scorer's scores track the medians.
/// @dev Pure: the caller checks that `ballots` are exactly the revealed ones. The work is
/// (ballots x updates), 256 x 256 at MAX_EDGES, more than one transaction should carry, so it is
/// cut into parts of at most {COLUMNS} updates ({tallyPart}): every ballot carries just the
/// part's scores, and a scorer's distance from the medians adds up over the parts. Agreement,
/// which needs every median, is {agreement} over the summed distance and {spread}.
library ScoreTally {
    uint256 internal constant AGREEMENT_SCALE = 1_000_000;
    /// @notice Updates per tally part: 32 keeps the largest part (256 ballots) near 7M gas.
    uint256 internal constant COLUMNS = 32;

    /// @dev One part's outcome; masks are relative to the part's first update.
    struct Part {
        uint256 scoreStake;
        uint256 validMask;
        uint256 copyMask;
        uint256 includedMask;
        int32[] medians;
        uint64[] distances;
    }

    /// @notice Tallies `ballots` over the `columns` updates from update `first` on, which their
    /// scores cover (their masks cover the whole round); `stakes[k]` is `ballots[k].scorer`'s
    /// stake.
    /// @dev An update is included when valid, not a copy and its median is at least
    /// -harmTolerance. `distances[k]` is Σ|s_kj - m_j| over the part's valid non-copy updates j.
    /// Gas: the inner loops ({_column}, {_distances}, {WeightedMedian.lowerMedian}) run in
    /// assembly and read each score straight from its ballot in calldata; masks and stakes are
    /// read into memory once (16.5M gas for 64 x 64 in plain Solidity, 3.7M this way). Reverts
    /// if a ballot lacks 4 bytes per update.
    function tallyPart(
        IEdgeTune.ScoreBallot[] calldata ballots,
        uint128[] calldata stakes,
        uint16 first,
        uint16 columns,
        uint32 harmTolerance
    ) internal pure returns (Part memory p) {
        Columns memory c = _columns(ballots, stakes, first, columns);
        for (uint256 k = 0; k < stakes.length; ++k) {
            p.scoreStake += stakes[k];
        }
        p.medians = new int32[](columns);
        uint256[] memory packed = new uint256[](ballots.length);
        for (uint256 j = 0; j < columns; ++j) {
            uint256 bit = uint256(1) << j;
            (uint256 validStake, uint256 copyStake) = _column(packed, c, j);
            if (2 * validStake > p.scoreStake) p.validMask |= bit;
            if (2 * copyStake > p.scoreStake) p.copyMask |= bit;
            p.medians[j] = WeightedMedian.lowerMedian(packed);
            bool counted = p.validMask & bit != 0 && p.copyMask & bit == 0;
            if (counted && int256(p.medians[j]) >= -int256(uint256(harmTolerance))) p.includedMask |= bit;
        }
        p.distances = _distances(c, p.medians, p.validMask & ~p.copyMask);
    }

    /// @notice Σ|m_j - μ| over the counted updates j, where μ is the (lower) median of their
    /// medians: how far the best constant ballot is from the medians.
    /// @dev The spread is measured around the medians' own median, the constant closest to them
    /// in L1, so a scorer reporting any constant (zeros included) is at least that far away.
    function spread(int32[] memory medians, uint256 counted) internal pure returns (uint256 total) {
        uint256[] memory centre = new uint256[](medians.length);
        uint256 count = 0;
        for (uint256 j = 0; j < medians.length; ++j) {
            if (counted & (uint256(1) << j) != 0) centre[count++] = WeightedMedian.pack(medians[j], 1);
        }
        assembly ("memory-safe") {
            mstore(centre, count) // shrink to the counted medians; the memory past it is unused
        }
        int256 mu = WeightedMedian.lowerMedian(centre);
        for (uint256 j = 0; j < medians.length; ++j) {
            if (counted & (uint256(1) << j) != 0) total += _abs(int256(medians[j]) - mu);
        }
    }

    /// @notice A scorer's agreement in millionths: max(0, 1 - distance / spread); 1 for scores
    /// equal to the medians, 0 for any constant scores (a validator that evaluated nothing), and
    /// 0 for every scorer when the medians are all equal (nothing to tell apart).
    function agreement(uint256 distance, uint256 spread_) internal pure returns (uint32) {
        if (distance >= spread_) return 0;
        return uint32(((spread_ - distance) * AGREEMENT_SCALE) / spread_);
    }

    /// @dev Per ballot k: the calldata offset of its scores, its masks shifted to the part's
    /// first update, and its scorer's stake.
    struct Columns {
        uint256[] scoresAt;
        uint256[] validMasks;
        uint256[] copyMasks;
        uint256[] stakes;
    }

    function _columns(
        IEdgeTune.ScoreBallot[] calldata ballots,
        uint128[] calldata stakes,
        uint16 first,
        uint16 columns
    )
        private
        pure
        returns (Columns memory c)
    {
        uint256 n = ballots.length;
        (c.scoresAt, c.validMasks, c.copyMasks, c.stakes) =
            (new uint256[](n), new uint256[](n), new uint256[](n), new uint256[](n));
        for (uint256 k = 0; k < n; ++k) {
            bytes calldata raw = ballots[k].scores;
            if (raw.length != 4 * uint256(columns)) {
                revert IEdgeTune.EdgeTuneScoresLength(raw.length, 4 * uint256(columns));
            }
            uint256 offset;
            assembly ("memory-safe") {
                offset := raw.offset
            }
            c.scoresAt[k] = offset;
            (c.validMasks[k], c.copyMasks[k]) = (ballots[k].validMask >> first, ballots[k].copyMask >> first);
            c.stakes[k] = stakes[k];
        }
    }

    /// @dev One pass over the ballots for update j: fills `packed` with {WeightedMedian.pack}
    /// (score, stake) of every ballot (the raw 4 bytes of an int32 are its uint32 bits, so the
    /// sign flip applies to them directly) and sums the stake that marked j valid, and a copy.
    function _column(uint256[] memory packed, Columns memory c, uint256 j)
        private
        pure
        returns (uint256 validStake, uint256 copyStake)
    {
        (uint256[] memory scoresAt, uint256[] memory valid, uint256[] memory copies, uint256[] memory stakes) =
            (c.scoresAt, c.validMasks, c.copyMasks, c.stakes);
        assembly ("memory-safe") {
            let end := shl(5, mload(packed))
            let byteAt := shl(2, j)
            for { let i := 0x20 } iszero(gt(i, end)) { i := add(i, 0x20) } {
                let stake := mload(add(stakes, i))
                let raw := shr(224, calldataload(add(mload(add(scoresAt, i)), byteAt)))
                mstore(add(packed, i), or(shl(128, xor(raw, 0x80000000)), stake))
                validStake := add(validStake, mul(stake, and(shr(j, mload(add(valid, i))), 1)))
                copyStake := add(copyStake, mul(stake, and(shr(j, mload(add(copies, i))), 1)))
            }
        }
    }

    function _distances(Columns memory c, int32[] memory medians, uint256 counted)
        private
        pure
        returns (uint64[] memory distances)
    {
        uint256 n = c.scoresAt.length;
        distances = new uint64[](n);
        // The counted updates as (byte offset in a ballot's scores, median) pairs, packed into
        // one word each, so the inner loop below does no mask test.
        uint256[] memory targets = new uint256[](medians.length);
        uint256 count = 0;
        for (uint256 j = 0; j < medians.length; ++j) {
            if (counted & (uint256(1) << j) != 0) targets[count++] = (4 * j) << 64 | uint256(uint32(medians[j]));
        }
        if (count == 0) return distances;
        uint256[] memory scoresAt = c.scoresAt;
        for (uint256 k = 0; k < n; ++k) {
            uint256 distance = 0;
            assembly ("memory-safe") {
                let scoresOffset := mload(add(scoresAt, shl(5, add(k, 1))))
                let end := add(targets, shl(5, count))
                for { let t := add(targets, 0x20) } iszero(gt(t, end)) { t := add(t, 0x20) } {
                    let target := mload(t)
                    let score := signextend(3, shr(224, calldataload(add(scoresOffset, shr(64, target)))))
                    let d := sub(score, signextend(3, and(target, 0xffffffff)))
                    let sign := sar(255, d)
                    distance := add(distance, sub(xor(d, sign), sign)) // |d|
                }
            }
            distances[k] = uint64(distance); // at most 32 x 2^33
        }
    }

    function _abs(int256 x) private pure returns (uint256) {
        return uint256(x >= 0 ? x : -x);
    }
}
