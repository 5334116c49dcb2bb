// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IEdgeTune} from "../IEdgeTune.sol";

/// @title RoundClock
/// @notice The deadlines and counts of one round, and the phase they imply. The phase is computed,
/// never stored: a round moves on when a deadline passes without anyone sending a transaction.
/// @dev A round has seven stages in order (update commit/reveal, score commit/reveal, tally,
/// attest commit/reveal). Each ends at its deadline, or early once everyone expected has acted;
/// closing a stage early moves every later deadline forward by the time saved.
library RoundClock {
    uint8 internal constant STAGES = 7; // array lengths below must be literals

    /// @dev Three storage slots: four deadlines; three deadlines and four counts; two counts,
    /// the tally's progress and whether any update was included.
    struct Clock {
        uint64 commitEnd;
        uint64 revealEnd;
        uint64 scoreCommitEnd;
        uint64 scoreRevealEnd;
        uint64 tallyEnd;
        uint64 attestCommitEnd;
        uint64 attestRevealEnd;
        uint16 commits;
        uint16 reveals;
        uint16 scoreCommits;
        uint16 scoreReveals;
        uint16 attestCommits;
        uint16 attestReveals;
        uint8 talliedParts;
        bool tallied;
        bool anyIncluded;
    }

    /// @notice The stage lengths of a task, in stage order.
    function lengths(IEdgeTune.TaskConfig storage c) internal view returns (uint32[7] memory) {
        return [
            c.commitBlocks,
            c.revealBlocks,
            c.scoreCommitBlocks,
            c.scoreRevealBlocks,
            c.tallyBlocks,
            c.attestCommitBlocks,
            c.attestRevealBlocks
        ];
    }

    /// @notice Opens the round's first stage in block `start + 1`.
    function open(Clock storage clock, uint64 start, uint32[7] memory len) internal {
        _reschedule(clock, 0, start + len[0], len);
    }

    /// @notice Ends `stage` (0-based) with the previous block, so the next stage starts in this one.
    function close(Clock storage clock, uint8 stage, uint32[7] memory len) internal {
        _reschedule(clock, stage, uint64(block.number - 1), len);
    }

    /// @notice The phase the round is in at the current block.
    function phase(Clock storage clock) internal view returns (IEdgeTune.Phase) {
        uint256 now_ = block.number;
        if (now_ <= clock.commitEnd) return IEdgeTune.Phase.UpdateCommit;
        if (clock.commits == 0) return IEdgeTune.Phase.Finalizable;
        if (now_ <= clock.revealEnd) return IEdgeTune.Phase.UpdateReveal;
        if (clock.reveals == 0) return IEdgeTune.Phase.Finalizable;
        if (now_ <= clock.scoreCommitEnd) return IEdgeTune.Phase.ScoreCommit;
        if (clock.scoreCommits == 0) return IEdgeTune.Phase.Finalizable;
        if (now_ <= clock.scoreRevealEnd) return IEdgeTune.Phase.ScoreReveal;
        if (clock.scoreReveals == 0) return IEdgeTune.Phase.Finalizable;
        if (!clock.tallied) return now_ <= clock.tallyEnd ? IEdgeTune.Phase.Tally : IEdgeTune.Phase.Finalizable;
        if (!clock.anyIncluded) return IEdgeTune.Phase.Finalizable;
        if (now_ <= clock.attestCommitEnd) return IEdgeTune.Phase.AttestCommit;
        if (clock.attestCommits == 0) return IEdgeTune.Phase.Finalizable;
        if (now_ <= clock.attestRevealEnd) return IEdgeTune.Phase.AttestReveal;
        return IEdgeTune.Phase.Finalizable;
    }

    /// @notice The last block of `current`, or 0 for a phase without a deadline.
    function end(Clock storage clock, IEdgeTune.Phase current) internal view returns (uint64) {
        if (current == IEdgeTune.Phase.UpdateCommit) return clock.commitEnd;
        if (current == IEdgeTune.Phase.UpdateReveal) return clock.revealEnd;
        if (current == IEdgeTune.Phase.ScoreCommit) return clock.scoreCommitEnd;
        if (current == IEdgeTune.Phase.ScoreReveal) return clock.scoreRevealEnd;
        if (current == IEdgeTune.Phase.Tally) return clock.tallyEnd;
        if (current == IEdgeTune.Phase.AttestCommit) return clock.attestCommitEnd;
        if (current == IEdgeTune.Phase.AttestReveal) return clock.attestRevealEnd;
        return 0;
    }

    function _reschedule(Clock storage clock, uint8 stage, uint64 stageEnd, uint32[7] memory len) private {
        uint64[7] memory ends;
        ends[stage] = stageEnd;
        for (uint8 s = stage + 1; s < STAGES; ++s) {
            ends[s] = ends[s - 1] + len[s];
        }
        if (stage <= 0) clock.commitEnd = ends[0];
        if (stage <= 1) clock.revealEnd = ends[1];
        if (stage <= 2) clock.scoreCommitEnd = ends[2];
        if (stage <= 3) clock.scoreRevealEnd = ends[3];
        if (stage <= 4) clock.tallyEnd = ends[4];
        if (stage <= 5) clock.attestCommitEnd = ends[5];
        clock.attestRevealEnd = ends[6];
    }
}
