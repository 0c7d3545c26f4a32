"""The network as the writers and the verification reference both need it, below both.

`slim_graph`: the Slim network's graph for a release (inputs, outputs, the
variables a module type exports); `checkpoint_reader`: the checkpoint read
whole and matched to that graph; `reference`: the Slim graph restored from the
checkpoint, whose outputs every artifact is verified against.
"""
