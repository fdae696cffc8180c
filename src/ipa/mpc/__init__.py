"""Three-party replicated secret sharing, honest majority, semi-honest security.

Layers, each importing only those above it (``tests/test_layers.py`` checks it):

- ``ring``, ``replicated``, ``sharing``: word types, one party's shares and
  their local operations, splitting and reconstructing secrets;
- ``channel``, ``prss``, ``context``, ``memory``: messages, correlated
  randomness, the protocol context and the in-memory three-party runner;
- ``multiply``, ``reveal``, ``input``: the basic one-round protocols;
- ``adder``, ``compare``, ``convert``, ``one_hot``: circuits on packed boolean
  words, conversions between boolean and arithmetic sharings, one-hot vectors;
- ``shuffle``, ``permute``, ``sort``: oblivious shuffle, moving rows to secret
  destinations, and the stable radix sort.
"""
