"""The IPA client side: the ``ipa`` command line, user agent and report collector."""
