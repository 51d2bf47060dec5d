<#
.SYNOPSIS
Start the Blender Session Manager (building it first when needed).

.EXAMPLE
.\scripts\start_manager.ps1
.\scripts\start_manager.ps1 -BlenderHost "192.168.1.100" -BlenderPort 9876
.\scripts\start_manager.ps1 -WithBlender
.\scripts\start_manager.ps1 -ManagerArgs @("--idle-timeout", "600")

.DESCRIPTION
-BlenderHost / -BlenderPort  the Blender addon address (defaults: $env:BLENDER_HOST or 127.0.0.1, $env:BLENDER_PORT or 9876)
-WithBlender                 when nothing listens there, start a headless Blender with the project's
                             addon (needs Python 3.11; creates .venv with the bpy wheel on first use)
-DebugBuild                  use a debug build
-ManagerArgs                 extra flags for `blender-session-manager serve`
#>
param(
    [string]$BlenderHost = $(if ($env:BLENDER_HOST) { $env:BLENDER_HOST } else { "127.0.0.1" }),
    [int]$BlenderPort = $(if ($env:BLENDER_PORT) { [int]$env:BLENDER_PORT } else { 9876 }),
    [switch]$WithBlender,
    [switch]$DebugBuild,
    [string[]]$ManagerArgs = @()
)
$ErrorActionPreference = "Stop"
$Repo = Split-Path -Parent $PSScriptRoot
function Say($msg) { Write-Host "[start_manager] $msg" }

$Profile = if ($DebugBuild) { "debug" } else { "release" }
$Exe = if ($IsWindows -or $env:OS -eq "Windows_NT") { "blender-session-manager.exe" } else { "blender-session-manager" }
$Bin = Join-Path $Repo "target/$Profile/$Exe"
$Stale = -not (Test-Path $Bin)
if (-not $Stale) {
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

$BlenderProc = $null
try {
    if (Test-Listening $BlenderHost $BlenderPort) {
        Say "Blender addon found at ${BlenderHost}:${BlenderPort}"
    } elseif ($WithBlender) {
        Say "no Blender at ${BlenderHost}:${BlenderPort}: starting a headless one (first run installs bpy)"
        $Venv = Join-Path $Repo ".venv"
        $Py = if (Test-Path (Join-Path $Venv "Scripts/python.exe")) { Join-Path $Venv "Scripts/python.exe" } else { Join-Path $Venv "bin/python" }
        if (-not (Test-Path $Py)) {
            $base = if (Get-Command py -ErrorAction SilentlyContinue) { "py" } else { "python3.11" }
            if ($base -eq "py") { py -3.11 -m venv $Venv } else { python3.11 -m venv $Venv }
            $Py = if (Test-Path (Join-Path $Venv "Scripts/python.exe")) { Join-Path $Venv "Scripts/python.exe" } else { Join-Path $Venv "bin/python" }
            & $Py -m pip install -r (Join-Path $Repo "scripts/requirements-test.txt")
        }
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
    Say "starting the manager: JSON-RPC 127.0.0.1:9880, addon-compatible 127.0.0.1:9877 (Ctrl-C stops)"
    & $Bin serve --blender "${BlenderHost}:${BlenderPort}" @ManagerArgs
    exit $LASTEXITCODE
} finally {
    if ($BlenderProc -and -not $BlenderProc.HasExited) {
        Say "stopping headless Blender"
        Stop-Process -Id $BlenderProc.Id
    }
}
