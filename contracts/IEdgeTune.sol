// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IEdgeTune
/// @notice Types, errors and events of the edgetune coordinator: edges stake on a fine-tuning
/// task, commit and reveal LoRA updates, commit and reveal stake-weighted votes on the aggregate,
/// and are paid by the median of their peers' Shapley scores. See docs/protocol.md.
interface IEdgeTune {
    /// @dev The phase of a task is derived from stored deadlines and counts, never stored.
    enum Phase {
        None,
        Registration,
        UpdateCommit,
        UpdateReveal,
        VoteCommit,
        VoteReveal,
        Finalizable,
        Finished,
        Cancelled
    }

    enum SlashReason {
        UpdateNotRevealed,
        VoteNotRevealed,
        InvalidUpdate
    }

    enum RewardKind {
        Trainer,
        Validator
    }

    /// @notice Everything fixed when a task is created. Block counts are phase lengths.
    struct TaskConfig {
        bytes32 baseModelHash;
        bytes32 adapterSpecHash;
        bytes32 initialGlobalHash;
        string baseModelUri;
        string baseModelCid;
        string initialGlobalCid;
        uint16 rounds;
        uint16 maxEdges;
        uint16 quorumBps;
        uint16 minTurnoutBps;
        uint16 validatorShareBps;
        uint32 registrationBlocks;
        uint32 commitBlocks;
        uint32 revealBlocks;
        uint32 voteCommitBlocks;
        uint32 voteRevealBlocks;
        uint32 maxSamples;
        uint32 harmTolerance;
        uint128 minStake;
        uint128 slashNonReveal;
        uint128 slashInvalid;
    }

    /// @notice What an agent polls: the task's phase and its own record, in one call.
    struct Status {
        Phase phase;
        uint16 round;
        uint64 phaseEnd;
        uint16 activeEdges;
        uint16 commits;
        uint16 reveals;
        uint16 voteCommits;
        uint16 voteReveals;
        bytes32 globalHash;
        string globalCid;
        bool registered;
        bool active;
        uint256 stake;
        bool updateCommitted;
        bool updateRevealed;
        bool voteCommitted;
        bool voteRevealed;
        uint256 owed;
    }

    /// @notice A validator's verdict on a round. Bit i of the masks and `scores[i]` refer to the
    /// i-th revealed update; scores are Shapley values in millionths.
    struct Ballot {
        uint256 validMask;
        uint256 includedMask;
        bytes32 aggregateHash;
        string aggregateCid;
        bool approve;
        int32[] scores;
    }

    struct RevealedUpdate {
        address edge;
        bytes32 updateHash;
        string cid;
        uint32 samples;
    }

    error EdgeTuneInvalidConfig(bytes32 field);
    error EdgeTuneUnknownTask(uint256 taskId);
    error EdgeTuneNotTaskOwner(uint256 taskId, address caller);
    error EdgeTuneWrongPhase(uint256 taskId, Phase current, Phase required);
    error EdgeTuneWrongRound(uint256 taskId, uint16 current, uint16 given);
    error EdgeTuneAlreadyRegistered(uint256 taskId, address edge);
    error EdgeTuneTaskFull(uint256 taskId, uint16 maxEdges);
    error EdgeTuneStakeTooLow(uint256 taskId, uint256 stake, uint256 minStake);
    error EdgeTuneNotActiveEdge(uint256 taskId, address edge);
    error EdgeTuneAlreadyCommitted(uint256 taskId, uint16 round, address edge);
    error EdgeTuneNotCommitted(uint256 taskId, uint16 round, address edge);
    error EdgeTuneAlreadyRevealed(uint256 taskId, uint16 round, address edge);
    error EdgeTuneCommitmentMismatch(uint256 taskId, uint16 round, address edge);
    error EdgeTuneSamplesOutOfRange(uint32 samples, uint32 maxSamples);
    error EdgeTuneInvalidMask(uint256 validMask, uint256 includedMask, uint16 reveals);
    error EdgeTuneScoresLength(uint256 length, uint16 reveals);
    error EdgeTuneStakeLocked(uint256 taskId, address edge);
    error EdgeTuneNothingToWithdraw(address account);
    error EdgeTuneNothingToRefund(uint256 taskId);

    event TaskCreated(uint256 indexed taskId, address indexed owner, uint256 pool, TaskConfig config);
    event TaskStarted(uint256 indexed taskId, uint16 edges, uint256 activeStake);
    event TaskCancelled(uint256 indexed taskId);
    event TaskFinished(uint256 indexed taskId, bytes32 globalHash, string globalCid);
    event EdgeRegistered(uint256 indexed taskId, address indexed edge, uint256 stake);
    event ExitRequested(uint256 indexed taskId, address indexed edge, uint16 round);
    event StakeReleased(uint256 indexed taskId, address indexed edge, uint256 amount);
    event UpdateCommitted(uint256 indexed taskId, uint16 indexed round, address indexed edge, bytes32 commitment);
    event UpdateRevealed(
        uint256 indexed taskId,
        uint16 indexed round,
        address indexed edge,
        uint16 index,
        bytes32 updateHash,
        string cid,
        uint32 samples
    );
    event VoteCommitted(uint256 indexed taskId, uint16 indexed round, address indexed edge, bytes32 commitment);
    event VoteRevealed(
        uint256 indexed taskId, uint16 indexed round, address indexed edge, bytes32 candidate, Ballot ballot
    );
    event RoundFinalized(
        uint256 indexed taskId,
        uint16 indexed round,
        bool accepted,
        bytes32 candidate,
        bytes32 globalHash,
        string globalCid,
        uint256 approvingStake,
        uint256 revealedStake,
        uint256 budget,
        uint256 paid
    );
    event ContributionScored(uint256 indexed taskId, uint16 indexed round, address indexed edge, int256 medianScore);
    event RewardCredited(
        uint256 indexed taskId,
        uint16 indexed round,
        address indexed edge,
        RewardKind kind,
        uint256 amount
    );
    event Slashed(uint256 indexed taskId, uint16 indexed round, address indexed edge, SlashReason reason, uint256 amount);
    event PoolRefunded(uint256 indexed taskId, address indexed owner, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
}
