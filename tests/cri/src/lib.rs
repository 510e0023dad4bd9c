//! A blocking client for the part of the Kubernetes CRI v1 API that kubelet
//! uses to start and stop a pod (see `proto/runtime_v1_subset.proto`), over
//! a runtime's Unix socket. Every call is bounded by a timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The generated CRI v1 messages and clients (package `runtime.v1`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unused_qualifications,
    reason = "generated code"
)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

use v1::image_service_client::ImageServiceClient;
use v1::runtime_service_client::RuntimeServiceClient;

/// A CRI error: the gRPC status, a transport failure or a timeout.
#[derive(Debug)]
pub struct CriError(pub String);

impl std::fmt::Display for CriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CriError {}

/// A connection to a CRI runtime; each call blocks until the answer comes
/// or its timeout passes.
pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
    timeout: Duration,
}

impl Cri {
    /// Connects to the gRPC server on the Unix socket `socket`; `timeout`
    /// bounds the connection and every later call.
    ///
    /// # Errors
    /// When the runtime cannot be built or the socket does not answer.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Self, CriError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| CriError(format!("tokio runtime: {e}")))?;
        let path: PathBuf = socket.to_path_buf();
        let channel = rt.block_on(async {
            let endpoint = Endpoint::try_from("http://[::1]:0")
                .map_err(|e| CriError(e.to_string()))?
                .connect_timeout(timeout)
                .timeout(timeout);
            tokio::time::timeout(
                timeout,
                endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                })),
            )
            .await
            .map_err(|_| CriError(format!("connect to {}: timed out", socket.display())))?
            .map_err(|e| CriError(format!("connect to {}: {e}", socket.display())))
        })?;
        Ok(Self {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel),
            timeout,
        })
    }

    /// Changes the bound of later calls.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs one call on the runtime service, bounded by the timeout.
    fn call<T, F>(
        &mut self,
        what: &str,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, CriError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.runtime.clone();
        let timeout = self.timeout;
        self.rt.block_on(async move {
            match tokio::time::timeout(timeout, f(client)).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(s)) => Err(CriError(format!("{what}: {:?}: {}", s.code(), s.message()))),
                Err(_) => Err(CriError(format!("{what}: no answer within {timeout:?}"))),
            }
        })
    }

    /// `Version`.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn version(&mut self) -> Result<v1::VersionResponse, CriError> {
        self.call("Version", |mut c| async move {
            c.version(v1::VersionRequest {
                version: "v1".into(),
            })
            .await
        })
    }

    /// `RunPodSandbox`; returns the sandbox id.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn run_pod_sandbox(&mut self, config: v1::PodSandboxConfig) -> Result<String, CriError> {
        self.call("RunPodSandbox", |mut c| async move {
            c.run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        })
        .map(|r| r.pod_sandbox_id)
    }

    /// `PodSandboxStatus` with `verbose` (containerd then adds an `info`
    /// entry with the sandbox's pid and runtime spec).
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn pod_sandbox_status(
        &mut self,
        id: &str,
    ) -> Result<v1::PodSandboxStatusResponse, CriError> {
        let id = id.to_owned();
        self.call("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: true,
            })
            .await
        })
    }

    /// `StopPodSandbox` (tears the pod's network down).
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn stop_pod_sandbox(&mut self, id: &str) -> Result<(), CriError> {
        let id = id.to_owned();
        self.call("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: id })
                .await
        })
        .map(|_| ())
    }

    /// `RemovePodSandbox`.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn remove_pod_sandbox(&mut self, id: &str) -> Result<(), CriError> {
        let id = id.to_owned();
        self.call("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
        })
        .map(|_| ())
    }

    /// `CreateContainer` in sandbox `pod` (created with `sandbox_config`);
    /// returns the container id.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn create_container(
        &mut self,
        pod: &str,
        config: v1::ContainerConfig,
        sandbox_config: v1::PodSandboxConfig,
    ) -> Result<String, CriError> {
        let pod = pod.to_owned();
        self.call("CreateContainer", |mut c| async move {
            c.create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod,
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
        })
        .map(|r| r.container_id)
    }

    /// `StartContainer`.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn start_container(&mut self, id: &str) -> Result<(), CriError> {
        let id = id.to_owned();
        self.call("StartContainer", |mut c| async move {
            c.start_container(v1::StartContainerRequest { container_id: id })
                .await
        })
        .map(|_| ())
    }

    /// `StopContainer` with a grace period of `timeout_s` seconds.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn stop_container(&mut self, id: &str, timeout_s: i64) -> Result<(), CriError> {
        let id = id.to_owned();
        self.call("StopContainer", |mut c| async move {
            c.stop_container(v1::StopContainerRequest {
                container_id: id,
                timeout: timeout_s,
            })
            .await
        })
        .map(|_| ())
    }

    /// `RemoveContainer`.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn remove_container(&mut self, id: &str) -> Result<(), CriError> {
        let id = id.to_owned();
        self.call("RemoveContainer", |mut c| async move {
            c.remove_container(v1::RemoveContainerRequest { container_id: id })
                .await
        })
        .map(|_| ())
    }

    /// `ContainerStatus` with `verbose` (containerd adds the task's pid).
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn container_status(&mut self, id: &str) -> Result<v1::ContainerStatusResponse, CriError> {
        let id = id.to_owned();
        self.call("ContainerStatus", |mut c| async move {
            c.container_status(v1::ContainerStatusRequest {
                container_id: id,
                verbose: true,
            })
            .await
        })
    }

    /// `ImageStatus`: the image when the runtime has it, `None` otherwise.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn image_status(&mut self, image: &str) -> Result<Option<v1::Image>, CriError> {
        let mut client = self.image.clone();
        let timeout = self.timeout;
        let spec = v1::ImageSpec {
            image: image.to_owned(),
        };
        self.rt.block_on(async move {
            match tokio::time::timeout(
                timeout,
                client.image_status(v1::ImageStatusRequest {
                    image: Some(spec),
                    verbose: false,
                }),
            )
            .await
            {
                Ok(Ok(r)) => Ok(r.into_inner().image),
                Ok(Err(s)) => Err(CriError(format!(
                    "ImageStatus: {:?}: {}",
                    s.code(),
                    s.message()
                ))),
                Err(_) => Err(CriError(format!(
                    "ImageStatus: no answer within {timeout:?}"
                ))),
            }
        })
    }
}
