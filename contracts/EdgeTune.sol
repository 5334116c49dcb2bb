// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IEdgeTune} from "./IEdgeTune.sol";
import {RoundClock} from "./libraries/RoundClock.sol";
import {ScoreTally} from "./libraries/ScoreTally.sol";
import {RoundSettler} from "./RoundSettler.sol";
import {ScoreTallier} from "./ScoreTallier.sol";
import {TaskRegistry} from "./TaskRegistry.sol";

/// @title EdgeTune
/// @notice Coordinates federated LoRA fine-tuning rounds among mutually distrustful edges
/// (protocol v2): commit–reveal of updates; stage 1, commit–reveal of every edge's Shapley
/// scores, tallied on chain into validity, medians and the included set; stage 2, commit–reveal
/// of attestations of the aggregate (hash and CID). {finalize} pays trainers by median score and
/// validators by agreement with the medians (credited, then pulled with {withdraw}), and slashes
/// absence, non-reveals and invalid updates, in rejected rounds too.
/// @dev Funds are conserved: balance == Σ stakes + Σ owed + Σ task pools (undistributed).
contract EdgeTune is TaskRegistry {
    using SafeCast for uint256;
    using RoundClock for RoundClock.Clock;

    /// @dev Bytes of scores per tally part (4 per update).
    uint256 private constant _PART_BYTES = 4 * ScoreTally.COLUMNS;

    ScoreTallier private immutable _tallier;
    RoundSettler private immutable _settler;

    constructor() {
        _tallier = new ScoreTallier();
        _settler = new RoundSettler();
    }

    // ---------------------------------------------------------------- round actions

    /// @notice Commits to this round's update, scores or attestation, as `stage` says; see
    /// {commitmentOf} for what `commitment` binds.
    /// @dev Requirements: `stage` is the current commit phase of `round`, an active edge, a
    /// non-zero commitment that differs from the edge's previous one, once per stage. The stage
    /// closes as soon as every active edge has committed. Emits {Committed}.
    function commit(uint256 taskId, uint16 round, Phase stage, bytes32 commitment) external {
        uint8 bit = _commitBit(stage);
        Round storage rd = _roundForAction(taskId, round, stage);
        _requireActiveEdge(taskId);
        if (commitment == 0) revert EdgeTuneZeroCommitment(taskId, round, msg.sender);
        Duty storage duty = _duties[taskId][round][msg.sender];
        if (duty.done & bit != 0) revert EdgeTuneAlreadyCommitted(taskId, round, msg.sender, stage);
        if (_commitments[taskId][round][msg.sender] == commitment) {
            revert EdgeTuneReusedCommitment(taskId, round, msg.sender, commitment);
        }
        _commitments[taskId][round][msg.sender] = commitment;
        duty.done |= bit;
        emit Committed(taskId, round, msg.sender, stage, commitment);
        if (_countCommit(rd.clock, stage) == _tasks[taskId].activeCount) {
            rd.clock.close(_stageIndex(stage), _lengths(taskId));
        }
    }

    /// @notice Opens a committed update; it takes the next position in the reveal order, which
    /// indexes the ballots' masks and scores.
    /// @dev Requirements: UpdateReveal phase, a matching commitment, a hash no earlier reveal of
    /// this round has used (a byte-identical copy is never a second contribution).
    /// Emits {UpdateRevealed}.
    function revealUpdate(uint256 taskId, uint16 round, bytes32 updateHash, string calldata cid, bytes32 salt)
        external
    {
        Round storage rd = _roundForAction(taskId, round, Phase.UpdateReveal);
        _checkCid(cid);
        bytes32 payload = keccak256(abi.encode(updateHash, cid));
        Duty storage duty = _checkReveal(taskId, round, Phase.UpdateCommit, payload, salt);
        if (_revealedHashes[taskId][round][updateHash]) revert EdgeTuneDuplicateUpdate(taskId, round, updateHash);
        _revealedHashes[taskId][round][updateHash] = true;
        uint16 index = rd.clock.reveals++;
        duty.revealIndex = index + 1;
        emit UpdateRevealed(taskId, round, msg.sender, index, updateHash, cid);
        if (rd.clock.reveals == rd.clock.commits) rd.clock.close(1, _lengths(taskId));
    }

    /// @notice Opens committed scores (stage 1): which revealed updates are valid, which are
    /// near-copies of an earlier one, and one big-endian int32 score per update.
    /// @dev Requirements: ScoreReveal phase, a matching commitment, copyMask ⊆ validMask ⊆
    /// revealed updates, 4 bytes of scores per revealed update. Only digests are stored, one per
    /// tally part; the ballot travels in the event and is handed back to {tally}.
    /// Emits {ScoresRevealed}.
    function revealScores(
        uint256 taskId,
        uint16 round,
        uint256 validMask,
        uint256 copyMask,
        bytes calldata scores,
        bytes32 salt
    ) external {
        Round storage rd = _roundForAction(taskId, round, Phase.ScoreReveal);
        uint16 reveals = rd.clock.reveals;
        if (validMask >> reveals != 0 || copyMask & ~validMask != 0) {
            revert EdgeTuneInvalidMask(validMask, copyMask, reveals);
        }
        if (scores.length != 4 * uint256(reveals)) revert EdgeTuneScoresLength(scores.length, 4 * uint256(reveals));
        _checkReveal(taskId, round, Phase.ScoreCommit, keccak256(abi.encode(validMask, copyMask, scores)), salt);
        for (uint256 offset = 0; offset < scores.length; offset += _PART_BYTES) {
            bytes calldata slice = scores[offset:_min(scores.length, offset + _PART_BYTES)];
            bytes32 previous = rd.scoreDigests[offset / _PART_BYTES];
            rd.scoreDigests[offset / _PART_BYTES] = _chain(previous, msg.sender, validMask, copyMask, slice);
        }
        rd.clock.scoreReveals += 1;
        emit ScoresRevealed(taskId, round, msg.sender, validMask, copyMask, scores);
        if (rd.clock.scoreReveals == rd.clock.scoreCommits) rd.clock.close(3, _lengths(taskId));
    }

    /// @notice Fixes stage 1 on chain (anyone may call), one part of at most 32 updates per call,
    /// parts in order: validity, copies, medians and the included set of the part's updates,
    /// and every scorer's distance from those medians. The last part fixes every scorer's
    /// agreement and closes the tally.
    /// @dev Requirements: Tally phase; `part` is the next untallied one; `ballots` are exactly
    /// the revealed ones, in order, each holding only this part's scores (checked against the
    /// part's digest kept by {revealScores}). Without turnout nothing is included.
    /// Emits {RoundTallied} with the last part.
    function tally(uint256 taskId, uint16 round, uint8 part, ScoreBallot[] calldata ballots) external {
        Round storage rd = _roundForAction(taskId, round, Phase.Tally);
        if (part != rd.clock.talliedParts) revert EdgeTuneWrongTallyPart(taskId, round, part, rd.clock.talliedParts);
        ScoreTally.Part memory p = _tallyPart(taskId, round, part, ballots);
        uint256 first = uint256(part) * ScoreTally.COLUMNS;
        _recordPart(rd, p, first);
        rd.clock.talliedParts = part + 1;
        if (first + p.medians.length < rd.clock.reveals) {
            for (uint256 k = 0; k < ballots.length; ++k) {
                _duties[taskId][round][ballots[k].scorer].distance += p.distances[k];
            }
        } else {
            _closeTally(taskId, round, ballots, p);
        }
    }

    function _tallyPart(uint256 taskId, uint16 round, uint8 part, ScoreBallot[] calldata ballots)
        private
        view
        returns (ScoreTally.Part memory)
    {
        uint128[] memory stakes = _checkedStakes(taskId, round, part, ballots);
        uint256 first = uint256(part) * ScoreTally.COLUMNS;
        uint256 columns = _min(ScoreTally.COLUMNS, _rounds[taskId][round].clock.reveals - first);
        uint32 tolerance = _tasks[taskId].config.harmTolerance;
        return _tallier.tallyPart(ballots, stakes, uint16(first), uint16(columns), tolerance);
    }

    function _recordPart(Round storage rd, ScoreTally.Part memory p, uint256 first) private {
        rd.validMask |= p.validMask << first;
        rd.copyMask |= p.copyMask << first;
        rd.includedMask |= p.includedMask << first;
        for (uint256 j = 0; j < p.medians.length; ++j) {
            rd.medians.push(p.medians[j]);
        }
    }

    /// @dev Checks that `ballots` are the revealed ones, in order, with this part's scores, and
    /// returns their scorers' stakes.
    function _checkedStakes(uint256 taskId, uint16 round, uint8 part, ScoreBallot[] calldata ballots)
        private
        view
        returns (uint128[] memory stakes)
    {
        Round storage rd = _rounds[taskId][round];
        if (ballots.length != rd.clock.scoreReveals) revert EdgeTuneBallotCount(ballots.length, rd.clock.scoreReveals);
        stakes = new uint128[](ballots.length);
        bytes32 digest = 0;
        for (uint256 k = 0; k < ballots.length; ++k) {
            ScoreBallot calldata b = ballots[k];
            digest = _chain(digest, b.scorer, b.validMask, b.copyMask, b.scores);
            stakes[k] = _edges[taskId][b.scorer].stake;
        }
        if (digest != rd.scoreDigests[part]) revert EdgeTuneBallotsMismatch(taskId, round);
    }

    /// @dev The last part: every scorer's agreement over its whole distance, then the turnout
    /// rule, and the stage closes.
    function _closeTally(uint256 taskId, uint16 round, ScoreBallot[] calldata ballots, ScoreTally.Part memory p)
        private
    {
        Round storage rd = _rounds[taskId][round];
        Task storage task = _tasks[taskId];
        int32[] memory medians = rd.medians;
        uint256 spread = _tallier.spread(medians, rd.validMask & ~rd.copyMask);
        uint32[] memory agreements = new uint32[](ballots.length);
        for (uint256 k = 0; k < ballots.length; ++k) {
            Duty storage duty = _duties[taskId][round][ballots[k].scorer];
            agreements[k] = ScoreTally.agreement(duty.distance + p.distances[k], spread);
            duty.agreement = agreements[k];
        }
        if (p.scoreStake * _BPS < task.activeStake * task.config.minTurnoutBps) {
            // Too few scorers to decide anything: nothing included, and nobody judged invalid.
            (rd.includedMask, rd.validMask) = (0, type(uint256).max >> (256 - rd.clock.reveals));
        }
        rd.clock.tallied = true;
        rd.clock.anyIncluded = rd.includedMask != 0;
        rd.clock.close(4, _lengths(taskId));
        emit RoundTallied(
            taskId, round, p.scoreStake, rd.validMask, rd.copyMask, rd.includedMask, medians, agreements
        );
    }

    /// @notice Opens a committed attestation (stage 2): the aggregate of the included set this
    /// edge computed, and whether it approves it. Approving stake is counted per (hash, CID).
    /// @dev Requirements: AttestReveal phase, a matching commitment. Emits {AttestationRevealed}.
    function revealAttestation(
        uint256 taskId,
        uint16 round,
        bytes32 aggregateHash,
        string calldata aggregateCid,
        bool approve,
        bytes32 salt
    ) external {
        Round storage rd = _roundForAction(taskId, round, Phase.AttestReveal);
        _checkCid(aggregateCid);
        bytes32 payload = keccak256(abi.encode(aggregateHash, aggregateCid, approve));
        _checkReveal(taskId, round, Phase.AttestCommit, payload, salt);
        bytes32 key = keccak256(abi.encode(aggregateHash, aggregateCid));
        uint256 stake = _edges[taskId][msg.sender].stake;
        rd.attestStake += stake;
        rd.clock.attestReveals += 1;
        if (approve) {
            _support(_candidates[taskId][round][key], rd, key, stake, aggregateHash, aggregateCid);
            _commitments[taskId][round][msg.sender] = key; // what {finalize} pays validators by
        }
        emit AttestationRevealed(taskId, round, msg.sender, key, aggregateHash, aggregateCid, approve);
        if (rd.clock.attestReveals == rd.clock.attestCommits) rd.clock.close(6, _lengths(taskId));
    }

    /// @notice Closes the current round (anyone may call): decides the attestation vote, credits
    /// rewards, slashes, processes exits, and opens the next round or finishes the task. Each
    /// call settles up to 64 edges in registration order; a round of more edges takes more calls,
    /// and the one that settles the last edge moves the round on.
    /// @dev Requirements: Finalizable phase. The first call fixes the outcome, the budget and the
    /// reward totals, so later calls pay by the same numbers. Emits {RoundSettling} after a call
    /// that leaves edges unsettled, {RoundFinalized} after the last, and {RewardCredited} and
    /// {Slashed} per edge.
    function finalize(uint256 taskId) external {
        _requirePhase(taskId, Phase.Finalizable);
        Address.functionDelegateCall(address(_settler), abi.encodeCall(RoundSettler.finalize, (taskId)));
    }

    // ---------------------------------------------------------------- views

    /// @notice The commitment {commit} expects: bound to chain, contract, task, round, stage and
    /// sender. `payload` is keccak256(abi.encode(...)) of what the stage's reveal opens:
    /// (updateHash, cid), (validMask, copyMask, scores) or (aggregateHash, aggregateCid, approve).
    function commitmentOf(uint256 taskId, uint16 round, Phase stage, address edge, bytes32 payload, bytes32 salt)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(this), taskId, round, stage, edge, payload, salt));
    }

    // ---------------------------------------------------------------- internals: stages

    function _commitBit(Phase stage) private pure returns (uint8) {
        if (stage == Phase.UpdateCommit) return STEP_UPDATE_COMMITTED;
        if (stage == Phase.ScoreCommit) return STEP_SCORES_COMMITTED;
        if (stage == Phase.AttestCommit) return STEP_ATTEST_COMMITTED;
        revert EdgeTuneNotCommitPhase(stage);
    }

    /// @dev Stage indices of RoundClock: commit phases are 0, 2 and 5.
    function _stageIndex(Phase stage) private pure returns (uint8) {
        if (stage == Phase.UpdateCommit) return 0;
        return stage == Phase.ScoreCommit ? 2 : 5;
    }

    function _countCommit(RoundClock.Clock storage clock, Phase stage) private returns (uint16) {
        if (stage == Phase.UpdateCommit) return ++clock.commits;
        if (stage == Phase.ScoreCommit) return ++clock.scoreCommits;
        return ++clock.attestCommits;
    }

    /// @dev Checks the caller committed in `stage`, has not revealed, and that (payload, salt)
    /// open its commitment; marks the reveal done.
    function _checkReveal(uint256 taskId, uint16 round, Phase stage, bytes32 payload, bytes32 salt)
        private
        returns (Duty storage duty)
    {
        uint8 bit = _commitBit(stage);
        duty = _duties[taskId][round][msg.sender];
        if (duty.done & bit == 0) revert EdgeTuneNotCommitted(taskId, round, msg.sender, stage);
        if (duty.done & (bit << 1) != 0) revert EdgeTuneAlreadyRevealed(taskId, round, msg.sender, stage);
        if (_commitments[taskId][round][msg.sender] != commitmentOf(taskId, round, stage, msg.sender, payload, salt)) {
            revert EdgeTuneCommitmentMismatch(taskId, round, msg.sender, stage);
        }
        duty.done |= bit << 1;
    }

    /// @dev Tracks the leading candidate as attestations arrive, so {finalize} needs no search.
    /// A tie keeps the earlier leader; with quorum above half a tie can never reach quorum anyway.
    function _support(
        Candidate storage candidate,
        Round storage rd,
        bytes32 key,
        uint256 stake,
        bytes32 aggregateHash,
        string calldata aggregateCid
    ) private {
        if (candidate.approvingStake == 0) (candidate.aggregateHash, candidate.aggregateCid) = (aggregateHash, aggregateCid);
        candidate.approvingStake += stake;
        if (candidate.approvingStake > rd.leaderStake) (rd.leader, rd.leaderStake) = (key, candidate.approvingStake);
    }

    function _lengths(uint256 taskId) private view returns (uint32[7] memory) {
        return RoundClock.lengths(_tasks[taskId].config);
    }

    /// @dev A ballot's link in a part's digest chain: what {revealScores} stores and {tally} checks.
    function _chain(bytes32 previous, address scorer, uint256 validMask, uint256 copyMask, bytes calldata scores)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(previous, scorer, validMask, copyMask, keccak256(scores)));
    }

    function _checkCid(string calldata cid) private pure {
        if (bytes(cid).length > MAX_CID_BYTES) revert EdgeTuneCidTooLong(bytes(cid).length, MAX_CID_BYTES);
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }
}
