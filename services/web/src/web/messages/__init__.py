"""Message catalogues, one module per part of web (see :mod:`web.i18n`)."""
