"""A deploy rehearsal: the synthesized app deployed into moto, as `cdk deploy --all` would.

`scenario` runs the deploys and checks them, `deployer` plays the CDK CLI and the parts of
CloudFormation moto lacks, `custom_resources` runs the handlers, `gaps` says what moto skipped.
"""
