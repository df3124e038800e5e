"""byoc/livepeer"""
