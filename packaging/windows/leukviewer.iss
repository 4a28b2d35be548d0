; Inno Setup 6 script: a Windows installer from the PyInstaller folder dist\leukviewer\ (build_installer.spec).
;   iscc /DAppVersion=0.1.0 packaging\windows\leukviewer.iss      -> dist\leukviewer-0.1.0-setup.exe
; Installs for the current user by default (no administrator rights); the setup offers all users too.
; For Research Use Only. Not for use in diagnostic procedures.

#ifndef AppVersion
  #error Pass the version from pyproject.toml: iscc /DAppVersion=X.Y.Z packaging\windows\leukviewer.iss
#endif
#define AppName "leukviewer"

[Setup]
AppId={{6E1B3C52-7A0D-4F4B-9C2E-4C1E5A8B9D17}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion} (For Research Use Only)
AppPublisher=leukviewer
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename={#AppName}-{#AppVersion}-setup
SetupIconFile=..\..\assets\icons\leukviewer.ico
UninstallDisplayIcon={app}\{#AppName}.exe
InfoBeforeFile=ruo.txt
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Files]
Source: "..\..\dist\{#AppName}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppName}.exe"; Comment: "For Research Use Only. Not for use in diagnostic procedures."
Name: "{group}\{#AppName} self-test"; Filename: "{cmd}"; Parameters: "/k ""{app}\{#AppName}-cli.exe"" --self-test"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"

[Run]
Filename: "{app}\{#AppName}-cli.exe"; Parameters: "--self-test"; StatusMsg: "Checking the installation (self-test)..."; Flags: runhidden waituntilterminated
Filename: "{app}\{#AppName}.exe"; Description: "Start {#AppName}"; Flags: postinstall nowait skipifsilent
