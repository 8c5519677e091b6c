"""Alipay's open API (alipay.trade.*): RSA2 signing, certificate serial numbers, the client. No Django."""
