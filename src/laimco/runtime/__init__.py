"""Split inference over a network (docs/runtime.md): the edge server hosting the server part as an
MLServer custom runtime, the device client, link emulation and `laimco deploy`.

| module | what it holds |
|---|---|
| `protocol` | the tensors that cross the cut, request checks, manifest identity (numpy only) |
| `pruned_folder` | a pruned folder checked before it is opened (manifest, names, SHA-256s) |
| `server_model` | `ServerSubModel`, the MLServer runtime (server process only) |
| `guard` | gRPC interceptor: token, raw-tensor sizes, request size (server process only) |
| `repository` | MLServer settings generated from a pruned folder |
| `launch` | `python -m laimco.runtime.launch REPO`: `mlserver start` with the guard |
| `server` | start/stop the server as a child process on loopback ports |
| `client` | `DeviceClient`, `ServerConnection`: device part, gRPC, retries |
| `request_log` | retry policy, attempts, timings and replies of the request log |
| `link` | `ShapedUplink`: a relay that paces the upload at r(p, g) |
| `deploy`, `deploy_report` | `laimco deploy` and its report |
| `deploy_measure` | held-out inputs, compared rows, quality metrics, paired timing |
| `deploy_output` | the staged `--out` folder of a deployment, `DeployError` |
| `commands` | the `serve`, `infer`, `deploy` commands |

MLServer's and tritonclient's generated protobuf modules both define `inference.*` and cannot
be imported into one process: the server side (`server_model`, `launch`) and the client side
(`client`, `server.wait_until_ready`) live in different processes. Nothing is imported here.
"""
