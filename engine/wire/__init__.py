"""The wire, sans-IO: bytes in, typed events out; no asyncio, no aiohttp (engine/client.py does the I/O).

http11.py     ResponseReader: one HTTP/1.1 response's status, headers and body bytes
sse.py        SSEParser: Server-Sent Events' data payloads
openai.py     StreamAssembler: payloads of an OpenAI-style stream -> finished choices
vllm_fast.py  VllmFastPath: vLLM's running chunks taken by their bytes, equivalent to the above
"""
