"""Three-party replicated secret sharing, honest majority, semi-honest security (malicious: in progress).

Malicious mode (``run_three(..., security="malicious")``, ``ctx.verifier``):
products are recorded and verified at ``checkpoint(ctx)``; unmasked openings
wait for it; the shuffle and sort are not verified yet (``docs/malicious.md``).

Layers, each importing only those above it (``tests/test_layers.py`` checks it):

- ``ring``, ``replicated``, ``sharing``: word types, one party's shares and
  their local operations, splitting and reconstructing secrets;
- ``step``, ``channel``, ``prss``, ``verifier``, ``context``, ``memory``:
  declared steps, messages, correlated randomness, the record of unverified
  products (malicious mode), the protocol context and the in-memory
  three-party runner;
- ``multiply``, ``reveal``, ``input``: the basic one-round protocols;
  ``verify``: malicious-security checks (input consistency, a reveal confirmed
  by each component's second holder, a zero check by hashes);
  ``buckets``, ``checkpoint``: the bucket bound, and the checkpoint that
  verifies the products recorded in malicious mode (``docs/malicious.md``);
- ``adder``, ``compare``, ``convert``, ``one_hot``: circuits on packed boolean
  words, conversions between boolean and arithmetic sharings, one-hot vectors;
- ``shuffle``, ``permute``, ``sort``: oblivious shuffle, moving rows to secret
  destinations, and the stable radix sort.

Steps. Every message and every PRSS draw is keyed by a step path such as
``root/sort/pass_3/move/shuffle/perm_12``. The paths are declared, once per
protocol, in its own module (:mod:`ipa.mpc.step`)::

    from ipa.mpc.step import Family, Steps

    ADD_STEPS = Steps("add", "generate", carry=CARRIES_STEPS)  # name, leaves, children
    CARRIES_STEPS = Steps("carries", up=Family(6), down=Family(5))  # up_0 … up_5, down_0 … down_4

    def add(ctx, a, b):
        ctx = ctx.enter(ADD_STEPS)                  # first line of the protocol
        g = and_(ctx.narrow("generate"), a, b)      # a leaf: messages are sent there
        c = carries(ctx.narrow("carry"), g, a ^ b)  # a child protocol's tree

and in a loop, ``ctx.narrow("level", i)`` (a bounded family). An undeclared
name, an index past the family's bound, narrowing below a leaf or entering a
protocol where another tree is declared is a ProtocolError at that line. A
protocol that never narrows (``multiply``, ``and_``, ``reveal``,
``input_from``) declares nothing and runs at a leaf of its caller. To add a
step (a new phase, a malicious check): declare it in the caller's ``Steps``,
declare the new protocol's own tree, and regenerate ``tests/golden/steps.txt``
(see ``tests/test_golden.py``), whose difference shows the change in review.

Rounds are communication rounds (latency: the longest chain of messages each
sent after the previous one arrived), measured by the channel from depths
carried on every message; ``CommStats.steps`` counts distinct steps.
"""
