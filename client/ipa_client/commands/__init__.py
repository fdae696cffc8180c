"""Subcommands of the ``ipa`` command line, one module each (see ``ipa_client.cli``)."""
