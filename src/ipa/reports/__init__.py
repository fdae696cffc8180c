"""Report formats, one module per role.

- :mod:`ipa.reports.match_key`: the **user agent**'s encrypted match key;
- :mod:`ipa.reports.batch`: the **report collector**'s upload batch, one per helper;
- :mod:`ipa.reports.decode`: **helper i**'s decoder, from its batch to its share columns;
- :mod:`ipa.reports.layout`: the byte layouts the batch encoder and decoder share.

Who makes what, and what each party learns
-------------------------------------------
- A **user agent** XOR-splits its 64-bit match key and seals one part to
  each helper: the report collector learns nothing about the key.
- The **report collector** secret-shares its own fields and writes one
  upload batch per helper; the user agents' sealed parts pass through
  untouched.
- **Helper i** decodes only its own batch: it learns n, the batch's
  clear-text header and which reports are invalid; every share it holds is
  one of its two components.

Each module's docstring has the details: the format, what is sealed to whom,
and what is checked.

All integers are little-endian, except inside HPKE ``info``. The modules
import only downward: ``layout`` and ``match_key`` use the crypto and the
sharing; ``decode`` alone also knows the attribution's rows and query
configuration. This package imports none of them, so a user agent loads
only what it uses.
"""
