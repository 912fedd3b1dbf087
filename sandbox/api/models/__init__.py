"""Request and response models of the HTTP API, one module per area.

They document what each route takes and returns (`/docs`, generated clients) without changing
it: responses keep every field they carry today, and bodies the domain packages validate are
still validated there, with the same errors.
"""
