"""Photosearch on AWS: the CloudFormation stack (buckets, roles) and album upload.

Needs the `aws` extra (boto3). Every call honours the standard AWS configuration: credentials
chain, AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL (e.g. a local moto server),
AWS_MAX_ATTEMPTS. Nothing here is imported by the rest of the package.
"""
