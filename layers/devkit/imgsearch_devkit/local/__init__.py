"""The whole service on one machine: moto for AWS, the real handlers in-process.

``imgsearch local up`` runs ``LocalStack`` (``stack.py``): a moto server with the template's
resources (``template.py`` reads and transforms ``template.yaml``, the one reader of it for the
stack and the tests; ``resources.py`` creates it as a moto CloudFormation stack), the embed
function fed as Lambda's SQS event source mapping would (``sqs_worker.py``), the query function
behind an API Gateway HTTP API emulation (``http_adapter.py``), and the index pipeline as Step
Functions executions whose Lambda tasks run the real handlers (``lambda_dispatch.py``).
``moto_fixes.py`` closes the gaps between moto and AWS that the handlers would notice,
``function_logs.py`` keeps the functions' output in a log file, ``demo.py`` makes the demo data.
Tests and local tooling only: nothing here runs on AWS. See ``docs/local-stack.md``.
"""
