; distill-gui for Windows, per user, no admin rights (built on Linux by packaging/build.py with makensis).
; Defines from the build: VERSION, STAGE (the staged payload), WHEEL (its wheel's file name), OUTFILE.
; The payload goes to %LOCALAPPDATA%\distill-gui\app\installer; its bootstrap.py, run by a Python that the
; bundled uv finds or fetches, makes the app's environment (with the torch build that fits the GPU
; driver) and shows every step on the progress page.

Unicode true
!include "MUI2.nsh"
!include "LogicLib.nsh"

!define APP "distill-gui"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP}"
!define APPDIR "$LOCALAPPDATA\${APP}\app"

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
RequestExecutionLevel user
InstallDir "${APPDIR}\installer"
SetCompressor /SOLID lzma
ShowInstDetails show
ShowUninstDetails show
BrandingText "${APP} ${VERSION}"

!define MUI_ICON "${STAGE}\${APP}.ico"
!define MUI_UNICON "${STAGE}\${APP}.ico"
!define MUI_ABORTWARNING
!define MUI_WELCOMEPAGE_TEXT "This installs ${APP} ${VERSION} for you alone (no administrator rights needed).$\r$\n$\r$\nIt looks at your graphics card, then downloads the matching build of PyTorch and the app's libraries (a few GB with a CUDA build). Your runs, models and settings are kept when you update or uninstall."
!define MUI_FINISHPAGE_RUN "${APPDIR}\env\Scripts\pythonw.exe"
!define MUI_FINISHPAGE_RUN_PARAMETERS "-m distill_gui"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APP}"
!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Section "${APP} (required)" SecApp
    SectionIn RO
    SetOutPath "$INSTDIR"
    File "${STAGE}\payload\bootstrap.py"
    File "${STAGE}\payload\torch_builds.py"
    File "${STAGE}\payload\uv.exe"
    File "${STAGE}\payload\${WHEEL}"
    File "${STAGE}\payload\requirements.lock"
    File "${STAGE}\payload\torch-requirement.txt"
    File "${STAGE}\payload\${APP}.png"
    File "${STAGE}\payload\${APP}.svg"
    File "${STAGE}\${APP}.ico"
    DetailPrint "Detecting the GPU and installing (uv fetches Python 3.12 when needed)..."
    nsExec::ExecToLog '"$INSTDIR\uv.exe" run --no-project --python 3.12 "$INSTDIR\bootstrap.py" --payload "$INSTDIR" --no-shortcuts'
    Pop $0
    ${If} $0 != 0
        MessageBox MB_ICONSTOP "${APP} could not be installed (exit code $0).$\r$\n$\r$\nThe details on this page and the log in ${APPDIR}\logs say why. Run the installer again to retry; a previous install keeps working."
        Abort
    ${EndIf}
    CreateShortcut "$SMPROGRAMS\${APP}.lnk" "${APPDIR}\env\Scripts\pythonw.exe" "-m distill_gui" "$INSTDIR\${APP}.ico" 0
    WriteUninstaller "$INSTDIR\uninstall.exe"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${APP}"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "distill-gui developers"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${APP}.ico"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "${APPDIR}"
    WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
    WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
    WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
    WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section "Desktop shortcut" SecDesktop
    CreateShortcut "$DESKTOP\${APP}.lnk" "${APPDIR}\env\Scripts\pythonw.exe" "-m distill_gui" "$INSTDIR\${APP}.ico" 0
SectionEnd

Section "Uninstall"
    ; The bootstrapper removes the app folder, this installer copy included: run it from a temporary copy.
    InitPluginsDir
    CopyFiles /SILENT "$INSTDIR\uv.exe" "$PLUGINSDIR"
    CopyFiles /SILENT "$INSTDIR\bootstrap.py" "$PLUGINSDIR"
    CopyFiles /SILENT "$INSTDIR\torch_builds.py" "$PLUGINSDIR"
    nsExec::ExecToLog '"$PLUGINSDIR\uv.exe" run --no-project --python 3.12 "$PLUGINSDIR\bootstrap.py" --uninstall'
    Pop $0
    Delete "$SMPROGRAMS\${APP}.lnk"
    Delete "$DESKTOP\${APP}.lnk"
    DeleteRegKey HKCU "${UNINSTALL_KEY}"
    RMDir /r "$INSTDIR"
SectionEnd
