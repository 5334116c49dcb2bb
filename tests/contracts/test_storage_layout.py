"""RoundSettler runs by delegatecall on EdgeTune's storage, so every state variable must sit in
the same slot, at the same offset, with the same type in both compiled contracts."""

from edgetune.chain.compiler import compile_contracts


def _layout(artifact) -> list[tuple]:
    # Type ids embed the AST id of their declaring contract, which is the same for both.
    return [(e["label"], e["slot"], e["offset"], e["type"]) for e in artifact.storage_layout]


def test_round_settler_lays_storage_out_exactly_as_edgetune():
    artifacts = compile_contracts()
    edgetune, settler = _layout(artifacts["EdgeTune"]), _layout(artifacts["RoundSettler"])
    assert [label for label, *_ in edgetune][:3] == ["_taskCount", "_tasks", "_edges"]
    assert len(edgetune) == 10
    assert settler == edgetune
