"""Usage recorder: usage events from SQS into DynamoDB."""
