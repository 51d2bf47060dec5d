<#
.SYNOPSIS
Start the Blender Session Manager (building it first when needed).

.EXAMPLE
.\scripts\start_manager.ps1
.\scripts\start_manager.ps1 -BlenderHost "192.168.1.100" -BlenderPort 9876
.\scripts\start_manager.ps1 -WithBlender
.\scripts\start_manager.ps1 -StartOllama -StartMcp
.\scripts\start_manager.ps1 -ManagerArgs @("--idle-timeout", "600")

.DESCRIPTION
-BlenderHost / -BlenderPort  the Blender addon address (defaults: $env:BLENDER_HOST or 127.0.0.1, $env:BLENDER_PORT or 9876)
-WithBlender                 when nothing listens there, start a headless Blender with the project's
                             addon (needs Python 3.11; creates .venv with the bpy wheel on first use)
-StartOllama                 when `ollama` is installed and nothing answers on 127.0.0.1:11434, run
                             `ollama serve` in the background (stopped on exit); when it is not
                             installed, say so and go on (for scripts/ollama_agent.py)
-StartMcp                    also serve the example FastMCP server (scripts/mcp_server_example.py) on
                             Streamable HTTP at http://127.0.0.1:8765/mcp for MCP hosts that speak
                             HTTP, with the venv's python; stopped on exit
-McpPort                     port for -StartMcp (default 8765)
-DebugBuild                  use a debug build
-ManagerBin                  run this manager binary as it is (no build)
-ManagerArgs                 extra flags for `blender-session-manager serve`
#>
param(
    [string]$BlenderHost = $(if ($env:BLENDER_HOST) { $env:BLENDER_HOST } else { "127.0.0.1" }),
    [int]$BlenderPort = $(if ($env:BLENDER_PORT) { [int]$env:BLENDER_PORT } else { 9876 }),
    [switch]$WithBlender,
    [switch]$StartOllama,
    [switch]$StartMcp,
    [int]$McpPort = 8765,
    [switch]$DebugBuild,
    [string]$ManagerBin = "",
    [string[]]$ManagerArgs = @()
)
$ErrorActionPreference = "Stop"
$Repo = Split-Path -Parent $PSScriptRoot
function Say($msg) { Write-Host "[start_manager] $msg" }

$Profile = if ($DebugBuild) { "debug" } else { "release" }
$Exe = if ($IsWindows -or $env:OS -eq "Windows_NT") { "blender-session-manager.exe" } else { "blender-session-manager" }
$Bin = Join-Path $Repo "target/$Profile/$Exe"
if ($ManagerBin) {
    if (-not (Test-Path $ManagerBin)) { throw "-ManagerBin ${ManagerBin}: no such file" }
    $Bin = $ManagerBin
}
$Stale = -not $ManagerBin -and -not (Test-Path $Bin)
if (-not $ManagerBin -and -not $Stale) {
    $built = (Get-Item $Bin).LastWriteTime
    $Stale = @(Get-ChildItem -Recurse (Join-Path $Repo "src"), (Join-Path $Repo "Cargo.toml"), (Join-Path $Repo "Cargo.lock") |
        Where-Object { $_.LastWriteTime -gt $built }).Count -gt 0
}
if ($Stale) {
    Say "building the manager ($Profile)"
    Push-Location $Repo
    try {
        if ($DebugBuild) { cargo build --locked } else { cargo build --locked --release }
        if ($LASTEXITCODE -ne 0) { throw "cargo build failed" }
    } finally { Pop-Location }
}

function Test-Listening([string]$h, [int]$p) {
    try { $c = New-Object System.Net.Sockets.TcpClient; $c.Connect($h, $p); $c.Close(); return $true }
    catch { return $false }
}

# The venv's python (created with the bpy wheel and the test packages on first use).
function Get-VenvPython {
    $Venv = Join-Path $Repo ".venv"
    $py = if (Test-Path (Join-Path $Venv "Scripts/python.exe")) { Join-Path $Venv "Scripts/python.exe" } else { Join-Path $Venv "bin/python" }
    if (-not (Test-Path $py)) {
        $base = if (Get-Command py -ErrorAction SilentlyContinue) { "py" } else { "python3.11" }
        # Out-Host: tool output must not become part of the function's return value.
        if ($base -eq "py") { py -3.11 -m venv $Venv | Out-Host } else { python3.11 -m venv $Venv | Out-Host }
        $py = if (Test-Path (Join-Path $Venv "Scripts/python.exe")) { Join-Path $Venv "Scripts/python.exe" } else { Join-Path $Venv "bin/python" }
        & $py -m pip install -r (Join-Path $Repo "scripts/requirements-test.txt") | Out-Host
    }
    return $py
}

function Wait-Listening([string]$h, [int]$p, $proc, [int]$seconds) {
    $deadline = (Get-Date).AddSeconds($seconds)
    while (-not (Test-Listening $h $p)) {
        if ($proc.HasExited -or (Get-Date) -gt $deadline) { return $false }
        Start-Sleep -Milliseconds 100
    }
    return $true
}

$BlenderProc = $null
$OllamaProc = $null
$McpProc = $null
try {
    if ($StartOllama) {
        if (Test-Listening "127.0.0.1" 11434) {
            Say "Ollama already answers on 127.0.0.1:11434"
        } elseif (-not (Get-Command ollama -ErrorAction SilentlyContinue)) {
            Say "ollama is not installed (https://ollama.com/download); going on without it"
        } else {
            $OllamaLog = Join-Path ([System.IO.Path]::GetTempPath()) ("ollama-serve-" + [guid]::NewGuid() + ".log")
            $oldHost = $env:OLLAMA_HOST
            $env:OLLAMA_HOST = "127.0.0.1:11434"
            try {
                $OllamaProc = Start-Process -FilePath (Get-Command ollama).Source -ArgumentList "serve" -PassThru -NoNewWindow `
                    -RedirectStandardOutput $OllamaLog -RedirectStandardError "$OllamaLog.err"
            } finally { $env:OLLAMA_HOST = $oldHost }
            if (Wait-Listening "127.0.0.1" 11434 $OllamaProc 30) {
                Say "ollama serve started on http://127.0.0.1:11434 (log $OllamaLog.err)"
            } else {
                Say "ollama serve did not come up on 127.0.0.1:11434 (see $OllamaLog.err); going on without it"
                if (-not $OllamaProc.HasExited) { Stop-Process -Id $OllamaProc.Id }
                $OllamaProc = $null
            }
        }
    }

    if (Test-Listening $BlenderHost $BlenderPort) {
        Say "Blender addon found at ${BlenderHost}:${BlenderPort}"
    } elseif ($WithBlender) {
        Say "no Blender at ${BlenderHost}:${BlenderPort}: starting a headless one (first run installs bpy)"
        $Py = Get-VenvPython
        $Ready = Join-Path ([System.IO.Path]::GetTempPath()) ("blender-ready-" + [guid]::NewGuid())
        $BlenderProc = Start-Process -FilePath $Py -PassThru -NoNewWindow -ArgumentList @(
            (Join-Path $Repo "blender_addon/headless.py"), "--host", $BlenderHost, "--port", $BlenderPort, "--ready-file", $Ready)
        $deadline = (Get-Date).AddSeconds(120)
        while (-not (Test-Path $Ready)) {
            if ($BlenderProc.HasExited) { throw "headless Blender exited before it was ready" }
            if ((Get-Date) -gt $deadline) { throw "headless Blender not ready after 120 s" }
            Start-Sleep -Milliseconds 100
        }
        Say "headless Blender ready at $(Get-Content $Ready)"
    } else {
        Say "nothing listens on ${BlenderHost}:${BlenderPort} yet; the manager connects when Blender is up (or use -WithBlender)"
    }
    if ($StartMcp) {
        # The MCP server reaches the manager where --listen (or SESSION_MANAGER_LISTEN) puts it and
        # uses its token (passed in the environment, not on the command line). It connects on its
        # first tool call, so it may start before the manager.
        $ManagerAddr = if ($env:SESSION_MANAGER_LISTEN) { $env:SESSION_MANAGER_LISTEN } else { "127.0.0.1:9880" }
        $Token = $env:SESSION_MANAGER_TOKEN
        for ($i = 0; $i -lt $ManagerArgs.Count; $i++) {
            $a = $ManagerArgs[$i]
            if ($a -eq "--listen" -and $i + 1 -lt $ManagerArgs.Count) { $ManagerAddr = $ManagerArgs[$i + 1] }
            elseif ($a -like "--listen=*") { $ManagerAddr = $a.Substring(9) }
            elseif ($a -eq "--token" -and $i + 1 -lt $ManagerArgs.Count) { $Token = $ManagerArgs[$i + 1] }
            elseif ($a -like "--token=*") { $Token = $a.Substring(8) }
        }
        if ($ManagerAddr -like "0.0.0.0:*") { $ManagerAddr = "127.0.0.1:" + $ManagerAddr.Substring(8) }
        elseif ($ManagerAddr.StartsWith("[::]:")) { $ManagerAddr = "[::1]:" + $ManagerAddr.Substring(5) }
        if (Test-Listening "127.0.0.1" $McpPort) {
            Say "something already listens on 127.0.0.1:${McpPort}: not starting the MCP server (use -McpPort)"
        } else {
            $McpPy = Get-VenvPython
            $oldToken = $env:SESSION_MANAGER_TOKEN
            $env:SESSION_MANAGER_TOKEN = $Token
            try {
                $McpProc = Start-Process -FilePath $McpPy -PassThru -NoNewWindow -ArgumentList @(
                    (Join-Path $Repo "scripts/mcp_server_example.py"), "--transport", "streamable-http",
                    "--host", "127.0.0.1", "--port", $McpPort, "--manager", $ManagerAddr)
            } finally { $env:SESSION_MANAGER_TOKEN = $oldToken }
            if (Wait-Listening "127.0.0.1" $McpPort $McpProc 30) {
                Say "MCP server (Streamable HTTP) at http://127.0.0.1:${McpPort}/mcp -> manager $ManagerAddr"
            } else {
                Say "the MCP server did not come up on 127.0.0.1:${McpPort} (see its messages above); starting the manager anyway"
            }
        }
    }
    Say "starting the manager (defaults: JSON-RPC 127.0.0.1:9880, addon-compatible 127.0.0.1:9877, HTTP 127.0.0.1:9881; Ctrl-C stops)"
    & $Bin serve --blender "${BlenderHost}:${BlenderPort}" @ManagerArgs
    exit $LASTEXITCODE
} finally {
    if ($McpProc -and -not $McpProc.HasExited) {
        Say "stopping the MCP server"
        Stop-Process -Id $McpProc.Id
    }
    if ($BlenderProc -and -not $BlenderProc.HasExited) {
        Say "stopping headless Blender"
        Stop-Process -Id $BlenderProc.Id
    }
    if ($OllamaProc -and -not $OllamaProc.HasExited) {
        Say "stopping ollama serve"
        Stop-Process -Id $OllamaProc.Id
    }
}
