"""Photosearch on AWS: the entry points that put an album, its index and its search on AWS.

- `stack`: the CloudFormation stack (buckets, roles) and its outputs.
- `upload`: album upload to S3.
- `package`: the model package (code and weights) both SageMaker containers run.
- `processing`: inside the Processing job: plan, index one instance's shard, merge.
- `jobs`: the Processing job that indexes an S3 album (on SageMaker or with the local runner).
- `endpoint`: deploying and undeploying the search endpoint (serverless, async, real-time).
- `endpoint_client`: searching through a deployed endpoint.
- `inference`: the endpoint's handler, inside its container.
- `local`: local runners of the job and the endpoint (no SageMaker needed).
- `sagemaker_common`: what jobs and endpoint share (images, names, tags, log pointers).
- `cost`: estimated cost of each deployment choice (prices in prices.json).
- `clients`: boto3 sessions and clients, AWS failures as one-line messages.

Needs the `aws` extra (boto3). Every call honours the standard AWS configuration: credentials
chain, AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL (e.g. a local moto server),
AWS_MAX_ATTEMPTS. Only the shells import it (cli/aws.py holds the `photosearch aws ...`
commands), never the library rooms (storage, faces, index, search).
"""
