// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IEdgeTune} from "./IEdgeTune.sol";
import {ScoreTally} from "./libraries/ScoreTally.sol";

/// @title ScoreTallier
/// @notice {ScoreTally} behind an external call. {EdgeTune} creates one in its constructor, so
/// the tally's code lives in its own account and EdgeTune's runtime code stays under the
/// 24,576-byte limit (EIP-170); pure functions need no trust beyond that creation.
contract ScoreTallier {
    /// @notice See {ScoreTally.tallyPart}.
    function tallyPart(
        IEdgeTune.ScoreBallot[] calldata ballots,
        uint128[] calldata stakes,
        uint16 first,
        uint16 columns,
        uint32 harmTolerance
    ) external pure returns (ScoreTally.Part memory) {
        return ScoreTally.tallyPart(ballots, stakes, first, columns, harmTolerance);
    }

    /// @notice See {ScoreTally.spread}.
    function spread(int32[] calldata medians, uint256 counted) external pure returns (uint256) {
        return ScoreTally.spread(medians, counted);
    }
}
