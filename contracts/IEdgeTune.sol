// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IEdgeTune
/// @notice Types, errors and events of the edgetune coordinator (protocol v2): edges stake on a
/// fine-tuning task; each round they commit and reveal LoRA updates, then commit and reveal
/// Shapley scores of every update (stage 1), from which the contract fixes validity, medians and
/// the included set, then commit and reveal attestations of the aggregate (stage 2). Trainers are
/// paid by their median score, validators by how well their scores track the medians.
/// See docs/protocol.md.
interface IEdgeTune {
    /// @dev The phase of a task is derived from stored deadlines and counts, never stored.
    enum Phase {
        None,
        Registration,
        UpdateCommit,
        UpdateReveal,
        ScoreCommit,
        ScoreReveal,
        Tally,
        AttestCommit,
        AttestReveal,
        Finalizable,
        Finished,
        Cancelled
    }

    enum SlashReason {
        Absent,
        NotRevealed,
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
        uint32 scoreCommitBlocks;
        uint32 scoreRevealBlocks;
        uint32 tallyBlocks;
        uint32 attestCommitBlocks;
        uint32 attestRevealBlocks;
        uint32 harmTolerance;
        uint128 minStake;
        uint128 slashAbsent;
        uint128 slashNonReveal;
        uint128 slashInvalid;
    }

    /// @notice What an agent polls: the task's phase and its own record, in one call.
    /// `done` is the edge's bitmask of round steps (see the STEP_ constants of {EdgeTune}).
    struct Status {
        Phase phase;
        uint16 round;
        uint64 phaseEnd;
        uint16 activeEdges;
        uint16 reveals;
        uint16 scoreReveals;
        uint256 includedMask;
        bytes32 globalHash;
        string globalCid;
        bool registered;
        bool active;
        uint256 stake;
        uint8 done;
        uint256 owed;
        uint8 talliedParts;
        uint16 settledEdges;
    }

    /// @notice A stage-1 ballot as revealed: bit i of the masks and bytes [4i, 4i+4) of `scores`
    /// (a big-endian int32 Shapley value in millionths) refer to the i-th revealed update.
    struct ScoreBallot {
        address scorer;
        uint256 validMask;
        uint256 copyMask;
        bytes scores;
    }

    error EdgeTuneInvalidConfig(bytes32 field, uint256 value);
    error EdgeTuneUnknownTask(uint256 taskId);
    error EdgeTuneNotTaskOwner(uint256 taskId, address caller);
    error EdgeTuneWrongPhase(uint256 taskId, Phase current, Phase required);
    error EdgeTuneWrongRound(uint256 taskId, uint16 current, uint16 given);
    error EdgeTuneNotCommitPhase(Phase given);
    error EdgeTuneNotAllowed(uint256 taskId, address edge);
    error EdgeTuneAlreadyRegistered(uint256 taskId, address edge);
    error EdgeTuneTaskFull(uint256 taskId, uint16 maxEdges);
    error EdgeTuneStakeTooLow(uint256 taskId, uint256 stake, uint256 minStake);
    error EdgeTuneNotActiveEdge(uint256 taskId, address edge);
    error EdgeTuneZeroCommitment(uint256 taskId, uint16 round, address edge);
    error EdgeTuneReusedCommitment(uint256 taskId, uint16 round, address edge, bytes32 commitment);
    error EdgeTuneAlreadyCommitted(uint256 taskId, uint16 round, address edge, Phase stage);
    error EdgeTuneNotCommitted(uint256 taskId, uint16 round, address edge, Phase stage);
    error EdgeTuneAlreadyRevealed(uint256 taskId, uint16 round, address edge, Phase stage);
    error EdgeTuneCommitmentMismatch(uint256 taskId, uint16 round, address edge, Phase stage);
    error EdgeTuneDuplicateUpdate(uint256 taskId, uint16 round, bytes32 updateHash);
    error EdgeTuneInvalidMask(uint256 validMask, uint256 copyMask, uint16 reveals);
    error EdgeTuneScoresLength(uint256 length, uint256 expected);
    error EdgeTuneBallotCount(uint256 given, uint256 expected);
    error EdgeTuneBallotsMismatch(uint256 taskId, uint16 round);
    /// @notice {tally} was sent for a part other than the next one (another keeper was first).
    error EdgeTuneWrongTallyPart(uint256 taskId, uint16 round, uint8 given, uint8 expected);
    /// @notice A revealed CID is longer than MAX_CID_BYTES (finalize copies the winner's).
    error EdgeTuneCidTooLong(uint256 length, uint256 maxLength);
    /// @notice {RoundSettler} was called directly; only {EdgeTune.finalize} runs it.
    error EdgeTuneNotDelegated(address settler);
    error EdgeTuneStakeLocked(uint256 taskId, address edge);
    error EdgeTuneNothingToWithdraw(address account);
    error EdgeTuneNothingToRefund(uint256 taskId);

    event TaskCreated(uint256 indexed taskId, address indexed owner, uint256 pool, TaskConfig config);
    event EdgeAllowed(uint256 indexed taskId, address indexed edge);
    event TaskStarted(uint256 indexed taskId, uint16 edges, uint256 activeStake);
    event TaskCancelled(uint256 indexed taskId);
    event TaskFinished(uint256 indexed taskId, bytes32 globalHash, string globalCid);
    event EdgeRegistered(uint256 indexed taskId, address indexed edge, uint256 stake);
    event EdgeLeft(uint256 indexed taskId, address indexed edge, uint256 stake);
    event ExitRequested(uint256 indexed taskId, address indexed edge, uint16 round);
    event StakeReleased(uint256 indexed taskId, address indexed edge, uint256 amount);
    event Committed(
        uint256 indexed taskId, uint16 indexed round, address indexed edge, Phase stage, bytes32 commitment
    );
    event UpdateRevealed(
        uint256 indexed taskId, uint16 indexed round, address indexed edge, uint16 index, bytes32 updateHash, string cid
    );
    event ScoresRevealed(
        uint256 indexed taskId,
        uint16 indexed round,
        address indexed edge,
        uint256 validMask,
        uint256 copyMask,
        bytes scores
    );
    /// @notice Stage 1's outcome, fixed on chain. `medians[i]` is update i's stake-weighted
    /// median score; `agreements[k]` (millionths) is how closely the k-th scorer tracked them.
    event RoundTallied(
        uint256 indexed taskId,
        uint16 indexed round,
        uint256 scoreStake,
        uint256 validMask,
        uint256 copyMask,
        uint256 includedMask,
        int32[] medians,
        uint32[] agreements
    );
    event AttestationRevealed(
        uint256 indexed taskId,
        uint16 indexed round,
        address indexed edge,
        bytes32 candidate,
        bytes32 aggregateHash,
        string aggregateCid,
        bool approve
    );
    event RoundFinalized(
        uint256 indexed taskId,
        uint16 indexed round,
        bool accepted,
        bytes32 candidate,
        bytes32 globalHash,
        string globalCid,
        uint256 approvingStake,
        uint256 attestStake,
        uint256 budget,
        uint256 paid
    );
    /// @notice A {finalize} call settled the round's edges up to `settledEdges` of `edges`; the
    /// next call goes on from there.
    event RoundSettling(uint256 indexed taskId, uint16 indexed round, uint16 settledEdges, uint16 edges);
    event RewardCredited(
        uint256 indexed taskId, uint16 indexed round, address indexed edge, RewardKind kind, uint256 amount
    );
    event Slashed(uint256 indexed taskId, uint16 indexed round, address indexed edge, SlashReason reason, uint256 amount);
    event PoolRefunded(uint256 indexed taskId, address indexed owner, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
}
