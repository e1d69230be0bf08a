"""The machinery of the set-batch pass (:mod:`graphsurgery.passes.set_batch`), which alone imports it.

- :mod:`.common`: the trace's vocabulary: probe sizes, markers, operator families, node helpers
- :mod:`.values`: the elements of shape glue (numbers, dim names, the batch) and their arithmetic
- :mod:`.protos`: proto-level helpers: probe copies, dims, what a subgraph reads from outside
- :mod:`.patches`: the edits set-batch makes where a constant hard-codes the old batch
- :mod:`.trace`: the walk that follows the batch through the graph, scope by scope
- :mod:`.op_rules`, :mod:`.shape_rules`: where the batch goes through each operator
- :mod:`.rows`: row numbers ``Range(0, batch)``, followed only into the Gather they index
- :mod:`.search`: where the batch is in each input, trying the placements the inputs allow
"""
