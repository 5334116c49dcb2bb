// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IEdgeTune} from "../IEdgeTune.sol";
import {WeightedMedian} from "./WeightedMedian.sol";

/// @title ScoreTally
/// @notice Stage 1 of the vote, decided on chain from every revealed score ballot: which updates
/// are valid (a stake majority says so), which are near-copies (likewise), each update's
/// stake-weighted median score over all scorers (the author's own score included), the included
/// set, and how closely each scorer's scores track the medians.
/// @dev Pure: the caller checks that `ballots` are exactly the revealed ones.
library ScoreTally {
    uint256 internal constant AGREEMENT_SCALE = 1_000_000;

    struct Outcome {
        uint256 scoreStake;
        uint256 validMask;
        uint256 copyMask;
        uint256 includedMask;
        int32[] medians;
        uint32[] agreements;
    }

    /// @notice Tallies `ballots` over `reveals` updates; `stakes[k]` is `ballots[k].scorer`'s stake.
    /// @dev An update is included when valid, not a copy and its median is at least -harmTolerance.
    /// Agreement of scorer k is max(0, 1 - Σ|s_kj - m_j| / Σ|m_j|) over valid non-copy updates j:
    /// 1 for scores equal to the medians, 0 for all-zero scores (a validator that evaluated
    /// nothing), and 0 for every scorer when all medians are 0 (nothing to agree on).
    function tally(
        IEdgeTune.ScoreBallot[] calldata ballots,
        uint128[] calldata stakes,
        uint16 reveals,
        uint32 harmTolerance
    ) internal pure returns (Outcome memory o) {
        int32[][] memory scores = _decode(ballots, reveals);
        for (uint256 k = 0; k < stakes.length; ++k) {
            o.scoreStake += stakes[k];
        }
        o.medians = new int32[](reveals);
        uint256[] memory packed = new uint256[](ballots.length);
        for (uint256 j = 0; j < reveals; ++j) {
            uint256 bit = uint256(1) << j;
            (uint256 validStake, uint256 copyStake) = _markStakes(ballots, stakes, bit);
            if (2 * validStake > o.scoreStake) o.validMask |= bit;
            if (2 * copyStake > o.scoreStake) o.copyMask |= bit;
            for (uint256 k = 0; k < ballots.length; ++k) {
                packed[k] = WeightedMedian.pack(scores[k][j], stakes[k]);
            }
            o.medians[j] = WeightedMedian.lowerMedian(packed);
            bool counted = o.validMask & bit != 0 && o.copyMask & bit == 0;
            if (counted && int256(o.medians[j]) >= -int256(uint256(harmTolerance))) o.includedMask |= bit;
        }
        o.agreements = _agreements(scores, o.medians, o.validMask & ~o.copyMask);
    }

    function _decode(IEdgeTune.ScoreBallot[] calldata ballots, uint16 reveals)
        private
        pure
        returns (int32[][] memory scores)
    {
        scores = new int32[][](ballots.length);
        for (uint256 k = 0; k < ballots.length; ++k) {
            bytes calldata raw = ballots[k].scores;
            scores[k] = new int32[](reveals);
            for (uint256 j = 0; j < reveals; ++j) {
                scores[k][j] = int32(uint32(bytes4(raw[4 * j:4 * j + 4])));
            }
        }
    }

    function _markStakes(IEdgeTune.ScoreBallot[] calldata ballots, uint128[] calldata stakes, uint256 bit)
        private
        pure
        returns (uint256 validStake, uint256 copyStake)
    {
        for (uint256 k = 0; k < ballots.length; ++k) {
            if (ballots[k].validMask & bit != 0) validStake += stakes[k];
            if (ballots[k].copyMask & bit != 0) copyStake += stakes[k];
        }
    }

    function _agreements(int32[][] memory scores, int32[] memory medians, uint256 counted)
        private
        pure
        returns (uint32[] memory agreements)
    {
        agreements = new uint32[](scores.length);
        uint256 spread = 0;
        for (uint256 j = 0; j < medians.length; ++j) {
            if (counted & (uint256(1) << j) != 0) spread += _abs(int256(medians[j]));
        }
        if (spread == 0) return agreements;
        for (uint256 k = 0; k < scores.length; ++k) {
            uint256 distance = 0;
            for (uint256 j = 0; j < medians.length; ++j) {
                if (counted & (uint256(1) << j) != 0) distance += _abs(int256(scores[k][j]) - medians[j]);
            }
            if (distance < spread) agreements[k] = uint32(((spread - distance) * AGREEMENT_SCALE) / spread);
        }
    }

    function _abs(int256 x) private pure returns (uint256) {
        return uint256(x >= 0 ? x : -x);
    }
}
