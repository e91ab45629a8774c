"""The staff web console: an aiohttp sub-app at /console, thin views over the same services as
the REST API (`kizuna.appkeys.SERVICES`). Imports only flows/, campaigns/ and storage/
(pyproject's import contracts). This placeholder holds the contract until the console lands."""
