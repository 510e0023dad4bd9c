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

    /// Runs one call on `client` (a clone of the runtime or the image service client),
    /// bounded by the timeout.
    fn call<C, T, F>(
        &mut self,
        what: &str,
        client: C,
        f: impl FnOnce(C) -> F,
    ) -> Result<T, CriError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = self.timeout;
        self.rt.block_on(async move {
            match tokio::time::timeout(timeout, f(client)).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(s)) => Err(CriError(format!("{what}: {:?}: {}", s.code(), s.message()))),
                Err(_) => Err(CriError(format!("{what}: no answer within {timeout:?}"))),
            }
        })
    }

    /// [`Cri::call`] on the runtime service.
    fn runtime<T, F>(
        &mut self,
        what: &str,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, CriError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.runtime.clone();
        self.call(what, client, f)
    }

    /// `Version`.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn version(&mut self) -> Result<v1::VersionResponse, CriError> {
        let req = v1::VersionRequest {
            version: "v1".into(),
        };
        self.runtime("Version", |mut c| async move { c.version(req).await })
    }

    /// `RunPodSandbox`; returns the sandbox id.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn run_pod_sandbox(&mut self, config: v1::PodSandboxConfig) -> Result<String, CriError> {
        let req = v1::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        self.runtime("RunPodSandbox", |mut c| async move {
            c.run_pod_sandbox(req).await
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
        let req = v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        };
        self.runtime("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(req).await
        })
    }

    /// `StopPodSandbox` (tears the pod's network down), then `RemovePodSandbox`, as
    /// kubelet does when a pod goes.
    ///
    /// # Errors
    /// On a gRPC error or timeout of either.
    pub fn stop_and_remove_pod_sandbox(&mut self, id: &str) -> Result<(), CriError> {
        let stop = v1::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        let remove = v1::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.runtime("StopPodSandbox", |mut c| async move {
            c.stop_pod_sandbox(stop).await
        })?;
        self.runtime("RemovePodSandbox", |mut c| async move {
            c.remove_pod_sandbox(remove).await
        })
        .map(drop)
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
        let req = v1::CreateContainerRequest {
            pod_sandbox_id: pod.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        self.runtime("CreateContainer", |mut c| async move {
            c.create_container(req).await
        })
        .map(|r| r.container_id)
    }

    /// `StartContainer`.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn start_container(&mut self, id: &str) -> Result<(), CriError> {
        let req = v1::StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.runtime("StartContainer", |mut c| async move {
            c.start_container(req).await
        })
        .map(drop)
    }

    /// `StopContainer` with a grace period of `timeout_s` seconds, then `RemoveContainer`.
    ///
    /// # Errors
    /// On a gRPC error or timeout of either.
    pub fn stop_and_remove_container(&mut self, id: &str, timeout_s: i64) -> Result<(), CriError> {
        let stop = v1::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: timeout_s,
        };
        let remove = v1::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.runtime("StopContainer", |mut c| async move {
            c.stop_container(stop).await
        })?;
        self.runtime("RemoveContainer", |mut c| async move {
            c.remove_container(remove).await
        })
        .map(drop)
    }

    /// `ContainerStatus` with `verbose` (containerd adds the task's pid).
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn container_status(&mut self, id: &str) -> Result<v1::ContainerStatusResponse, CriError> {
        let req = v1::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        };
        self.runtime("ContainerStatus", |mut c| async move {
            c.container_status(req).await
        })
    }

    /// `ImageStatus`: the image when the runtime has it, `None` otherwise.
    ///
    /// # Errors
    /// On a gRPC error or timeout.
    pub fn image_status(&mut self, image: &str) -> Result<Option<v1::Image>, CriError> {
        let req = v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: image.to_owned(),
            }),
            verbose: false,
        };
        let client = self.image.clone();
        self.call("ImageStatus", client, |mut c| async move {
            c.image_status(req).await
        })
        .map(|r| r.image)
    }
}
