"""The console: the service's pages in the browser, for the bureau, the departments, operators,
regulators and the public, served by the API's own process at `/`.

Pages are rendered on the server from the same service functions the API calls, with the same
role checks, so nothing the API refuses is possible here. Every asset ships in this package (no
CDN, no font or script from elsewhere); the browser runs only the scripts in `static/`, under a
Content-Security-Policy that allows nothing inline.
"""
